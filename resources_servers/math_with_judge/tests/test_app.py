"""math_with_judge over HTTP (in-process; grading in worker processes), the optional judge, its
conformance check, and its generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("math_verify")

from ngym.devkit.conformance import check_server
from ngym.devkit.testing.asgi import in_process_client
from ngym.server.client import ServerClient
from resources_servers.math_with_judge.app import MathConfig, MathWithJudgeResourcesServer, judge_label
from resources_servers.math_with_judge.generate import generate
from resources_servers.math_with_judge.grading import grade

ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]


def judge_app(answer: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/responses")
    async def respond(body: dict[str, Any]) -> dict[str, Any]:
        message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}
        return {"id": "resp_1", "output": [message]}

    return app


def make_client(judge_answer: str | None = None) -> ServerClient:
    settings: dict[str, Any] = {"name": "env", "entrypoint": "app.py", "domain": "math"}
    upstream = ServerClient({})
    if judge_answer is not None:
        settings |= {"should_use_judge": True, "judge_model_server": {"type": "responses_api_models", "name": "judge"}}
        upstream = in_process_client({"judge": judge_app(judge_answer)})
    config = MathConfig.model_validate(settings)
    server = MathWithJudgeResourcesServer(config, upstream)
    return in_process_client({"env": server.build_app()})


def answered(row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**row, "response": {"output": [message] if text else []}}


async def verify(client: ServerClient, row: dict[str, Any], text: str) -> Any:
    return await client.post("env", "/verify", json=answered(row, text))


@pytest.mark.anyio
async def test_verify_over_http() -> None:
    client = make_client()
    row = {"responses_create_params": {"input": [{"role": "user", "content": "1/2?"}]}, "question": "q", "expected_answer": "\\frac{1}{2}"}
    for text, reward in [("\\boxed{0.5}", 1.0), ("Answer: 1/2", 1.0), ("\\boxed{0.4}", 0.0), ("", 0.0),
                         ("\\boxed{0.5} \\boxed{0.25}", 0.0), ("Answer: 0.5 or 0.25", 0.0)]:
        result = (await verify(client, row, text)).json()
        assert result["reward"] == reward, (text, result)
    result = (await verify(client, row, "\\boxed{0.5}")).json()
    assert result["extracted_answer"] == "0.5" and result["library_reward"] == 1.0 and result["question"] == "q"
    for row in EXAMPLES:
        assert (await verify(client, row, f"\\boxed{{{row['expected_answer']}}}")).json()["reward"] == 1.0


@pytest.mark.anyio
async def test_unreadable_gold_is_a_typed_failure() -> None:
    row = {"responses_create_params": {"input": []}, "expected_answer": " "}
    reply = await verify(make_client(), row, "\\boxed{1}")
    assert reply.status_code == 500 and "verifier_error" in reply.text


@pytest.mark.anyio
async def test_judge_is_asked_only_when_the_library_says_no() -> None:
    row = {"responses_create_params": {"input": []}, "question": "Area?", "expected_answer": "2\\pi"}
    yes = make_client("They are the same. [[A=B]]")
    result = (await verify(yes, row, "\\boxed{6.2831853}")).json()  # equal numerically: no judge needed
    assert result["reward"] == 1.0 and "judge_evaluations" not in result
    result = (await verify(yes, row, "\\boxed{\\tau}")).json()  # the library says no; the judge says equal twice
    assert result["reward"] == 1.0 and result["library_reward"] == 0.0 and result["judge_evaluations"] == [True, True]
    no = make_client("Different. [[A!=B]]")
    assert (await verify(no, row, "\\boxed{\\tau}")).json()["reward"] == 0.0
    assert (await verify(no, row, "")).json().get("judge_evaluations") is None  # no answer: nothing to judge
    broken = make_client("I cannot decide.")
    reply = await verify(broken, row, "\\boxed{\\tau}")
    assert reply.status_code == 500 and "unparseable judge answer" in reply.text


def test_judge_label() -> None:
    assert judge_label("[[A=B]] ... [[A!=B]]") is True  # the first label wins (the reference's rule)
    assert judge_label("so [[ A != B ]]") is False


def test_conformance() -> None:
    report = check_server(ENV_DIR, should_validate_data=True)
    assert report.ok, report.format()


def test_generator() -> None:
    train = list(generate("train", 600, seed=0))
    assert train == list(generate("train", 600, seed=0))
    validation = list(generate("validation", 100, seed=0))
    assert not {r["question"] for r in train} & {r["question"] for r in validation}
    assert {r["difficulty"] for r in train} == {1, 2, 3, 4, 5}
    for row in train[:200] + validation:  # every generated answer is read back by the verifier
        assert grade(f"\\boxed{{{row['expected_answer']}}}", row["expected_answer"]).reward == 1.0, row
        assert grade("", row["expected_answer"]).reward == 0.0


@pytest.mark.anyio
async def test_grading_survives_a_host_dropping_the_module() -> None:
    """The host removes an environment's own modules from sys.modules after loading it (ngym.server.host)."""
    import sys

    client = make_client()
    row = {"responses_create_params": {"input": []}, "expected_answer": "3"}
    sys.modules.pop("resources_servers.math_with_judge.grading", None)
    assert (await verify(client, row, "\\boxed{3}")).json()["reward"] == 1.0
