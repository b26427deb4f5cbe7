"""mcqa over HTTP (in-process), its conformance check, and its generator."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.conformance import check_server
from ngym.env import EnvConfig
from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient
from resources_servers.mcqa.app import MCQAResourcesServer
from resources_servers.mcqa.generate import generate
from resources_servers.mcqa.grading import grade

ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]


@pytest.fixture
def client() -> ServerClient:
    config = EnvConfig.model_validate({"name": "env", "entrypoint": "app.py", "domain": "knowledge"})
    return wire({"env": MCQAResourcesServer(config, ServerClient({}))})


def answered(row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**row, "response": {"output": [message] if text else []}}


def oracle(row: dict[str, Any]) -> str:
    """A response every grading mode reads as the right letter."""
    return f"Answer: \\boxed{{{row['expected_answer']}}}"


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(5))
async def test_verify_example_rows(client: ServerClient, index: int) -> None:
    row = EXAMPLES[index]
    right = (await client.post("env", "/verify", json=answered(row, oracle(row)))).json()
    assert right["reward"] == 1.0 and right["extracted_answer"] == row["expected_answer"]
    assert right["options"] == row["options"]  # the row's fields are kept
    wrong_letter = next(k for o in row["options"] for k in o if k != row["expected_answer"])
    wrong = (await client.post("env", "/verify", json=answered(row, oracle({"expected_answer": wrong_letter})))).json()
    assert wrong["reward"] == 0.0 and wrong["extracted_answer"] == wrong_letter
    empty = (await client.post("env", "/verify", json=answered(row, ""))).json()
    assert empty["reward"] == 0.0 and "extracted_answer" not in empty
    letters = " ".join(f"\\boxed{{{k}}}" for o in row["options"] for k in o)
    spray = (await client.post("env", "/verify", json=answered(row, letters))).json()
    assert spray["reward"] == 0.0 and spray["hedged"] is True


@pytest.mark.anyio
async def test_reference_row_and_template_regex(client: ServerClient) -> None:
    row = {
        "responses_create_params": {"input": [{"role": "user", "content": "Q?\nA: x\nB: y"}]},
        "options": [{"A": "x"}, {"B": "y"}],
        "expected_answer": "b",
        "uuid": "3c26f339-4b88-54be-b72a-e9c438ca6335",
        "template_metadata": {"output_regex": "\\\\boxed\\{\\s*([A-Za-z])\\s*\\}"},
    }
    result = (await client.post("env", "/verify", json=answered(row, "Answer: \\boxed{b}"))).json()
    assert result["reward"] == 1.0 and result["expected_answer"] == "B" and result["extraction_rule"] == "template_regex"
    assert result["uuid"] == row["uuid"]


@pytest.mark.anyio
async def test_a_row_without_expected_answer_is_rejected(client: ServerClient) -> None:
    row = answered(EXAMPLES[0], "\\boxed{A}")
    del row["expected_answer"]
    assert (await client.post("env", "/verify", json=row)).status_code == 422


def test_conformance() -> None:
    report = check_server(ENV_DIR, should_validate_data=True)
    assert report.ok, report.format()


def question(row: dict[str, Any]) -> str:
    return str(row["responses_create_params"]["input"][0]["content"])


def test_generator_is_deterministic_disjoint_and_uniform() -> None:
    train = list(generate("train", 1200, seed=0))
    assert train == list(generate("train", 1200, seed=0))
    assert train != list(generate("train", 1200, seed=1))
    validation = list(generate("validation", 200, seed=0))
    assert not {question(r) for r in train} & {question(r) for r in validation}
    assert len({question(r) for r in train}) == 1200
    for row in train + validation:
        assert 4 <= len(row["options"]) <= 10
        assert grade(oracle(row), row["options"], row["expected_answer"], row["grading_mode"])[0] == 1.0
    # the answer's position is uniform: among 4-option rows, each letter is the answer ~1/4 of the time
    four = Counter(r["expected_answer"] for r in train if len(r["options"]) == 4)
    total = sum(four.values())
    assert set(four) == set("ABCD") and all(abs(n / total - 0.25) < 0.07 for n in four.values()), four


def test_generator_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        next(generate("test", 1))
