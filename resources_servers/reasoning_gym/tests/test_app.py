"""reasoning_gym over its HTTP routes (in-process): the package's answers score 1.0 (in several
forms), wrong answers and hacks do not, the reference's rows, unknown tasks are typed failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient
from resources_servers.reasoning_gym.app import ReasoningGymEnvironment
from resources_servers.reasoning_gym.generate import generate
from resources_servers.reasoning_gym.rg_tasks import NO_REFERENCE_ANSWER, default_tasks, extract, task_names
from tests.fakes import make

pytestmark = pytest.mark.anyio
ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]
# the first row of the reference's example.jsonl (knights_knaves)
REFERENCE_ROW = {
    "responses_create_params": {"input": [{"role": "user", "content": "Zoey ... (Format your answer like: ...)"}]},
    "question": "A very special island is inhabited only by sages and fools. Sages always tell the truth, and fools "
                "always lie. You meet 2 inhabitants: Zoey, and Riley. Zoey commented, \"Riley is a fool\". In Riley's "
                "words: \"Zoey is a sage or Riley is a sage\". So who is a sage and who is a fool? (Format your answer "
                "like: \"Zoey is a sage/fool, and Riley is a sage/fool\")",
    "answer": "Zoey is a fool, and Riley is a sage.",
    "metadata": {"source_dataset": "knights_knaves", "source_index": 0,
                 "statements": [["lying", 1], ["or", ["telling-truth", 0], ["telling-truth", 1]]],
                 "solution": [False, True], "names": ["Zoey", "Riley"],
                 "knight_knave_terms": {"knight": "sage", "knave": "fool", "a_knight": "a sage", "a_knave": "a fool",
                                        "Knight": "Sage", "Knave": "Fool"},
                 "difficulty": {"n_people": 2, "depth_constraint": 2, "width_constraint": 2}},
}
MIX: dict[str, dict[str, object]] = {"basic_arithmetic": {}, "leg_counting": {}, "word_sorting": {}, "knights_knaves": {}, "chain_sum": {},
       "letter_counting": {}, "number_sorting": {}, "spell_backward": {}}


@pytest.fixture(scope="module")
def client() -> ServerClient:
    return wire({"env": make(ReasoningGymEnvironment, "env", domain="knowledge")})


async def verify(client: ServerClient, row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    result = await client.post("env", "/verify", json={**row, "response": {"output": [message] if text else []}})
    assert result.status_code == 200, result.text
    return dict(result.json())


async def test_oracle_and_empty(client: ServerClient) -> None:
    for row in EXAMPLES + list(generate("validation", 40, 5, MIX)):
        body = await verify(client, row, f"Thinking...\n<answer>{row['answer']}</answer>")
        assert body["reward"] == 1.0, body
        assert body["task_name"] == row["metadata"]["source_dataset"] and body["extracted_answer"] == row["answer"]
        assert (await verify(client, row, ""))["reward"] == 0.0


async def test_grid_tasks_score_after_the_json_round_trip(client: ServerClient) -> None:
    for row in generate("validation", 6, 1, {"rearc": {}, "arc_agi": {}}):
        row = json.loads(json.dumps(row))  # as read from a JSONL file
        assert (await verify(client, row, f"<answer>{row['answer']}</answer>"))["reward"] == 1.0


async def test_answer_forms(client: ServerClient) -> None:
    row = next(r for r in generate("validation", 40, 5, MIX) if r["metadata"]["source_dataset"] == "basic_arithmetic")
    answer = row["answer"]
    for text in [f"<answer>{answer}</answer>", f"<answer> {answer} </answer>", f"so \\boxed{{{answer}}}",
                 f"<answer>0</answer> no wait <answer>{answer}</answer>"]:
        assert (await verify(client, row, text))["reward"] == 1.0, text


async def test_wrong_answers_and_hacks(client: ServerClient) -> None:
    row = next(r for r in generate("validation", 40, 5, MIX) if r["metadata"]["source_dataset"] == "basic_arithmetic")
    wrong = str(int(float(row["answer"])) + 1)
    attempts = [
        f"<answer>{wrong}</answer>",
        row["answer"],                                                     # no answer tags: not scored
        f"<answer>{row['answer']}</answer> oh no <answer>{wrong}</answer>",  # the last answer counts
        f"<answer>{wrong} or {row['answer']}</answer>",                    # spraying inside one answer
        "<answer></answer>",
    ]
    for text in attempts:
        assert (await verify(client, row, text))["reward"] == 0.0, text


async def test_score_mode_passes_partial_credit_through() -> None:
    client = wire({"env": make(ReasoningGymEnvironment, "env", domain="knowledge", reward_mode="score")})
    row = next(r for r in generate("validation", 40, 5, MIX) if r["metadata"]["source_dataset"] == "basic_arithmetic")
    wrong = str(int(float(row["answer"])) + 1)
    body = await verify(client, row, f"<answer>{wrong} or {row['answer']}</answer>")
    assert 0.0 < body["reward"] == body["score"] < 1.0
    strict = await verify(wire({"env": make(ReasoningGymEnvironment, "env", domain="knowledge")}), row,
                          f"<answer>{wrong} or {row['answer']}</answer>")
    assert strict["reward"] == 0.0 and strict["score"] == body["score"]


async def test_reference_row(client: ServerClient) -> None:
    assert (await verify(client, REFERENCE_ROW, "<answer>Zoey is a fool, and Riley is a sage.</answer>"))["reward"] == 1.0
    assert (await verify(client, REFERENCE_ROW, "<answer>Zoey is a sage, and Riley is a fool.</answer>"))["reward"] == 0.0


async def test_fallback_to_full_text_is_the_reference_behaviour() -> None:
    client = wire({"env": make(ReasoningGymEnvironment, "env", domain="knowledge", fallback_to_full_text=True)})
    row = next(r for r in generate("validation", 40, 5, MIX) if r["metadata"]["source_dataset"] == "basic_arithmetic")
    assert (await verify(client, row, row["answer"]))["reward"] == 1.0


async def test_unknown_task_is_a_verifier_error(client: ServerClient) -> None:
    row = {**REFERENCE_ROW, "metadata": {"source_dataset": "no_such_task"}}
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "<answer>1</answer>"}]}
    result = await client.post("env", "/verify", json={**row, "response": {"output": [message]}})
    assert result.status_code == 500 and "no task 'no_such_task'" in result.text


def test_tasks_and_generator() -> None:
    names = task_names()
    assert len(names) >= 100 and "composite" not in names
    assert NO_REFERENCE_ANSWER <= set(names) and not NO_REFERENCE_ANSWER & set(default_tasks())
    rows = list(generate("train", 30, 1, {"leg_counting": {"weight": 3}, "chain_sum": {"config": {"min_terms": 5}}}))
    assert rows == list(generate("train", 30, 1, {"leg_counting": {"weight": 3}, "chain_sum": {"config": {"min_terms": 5}}}))
    counts = {n: sum(r["metadata"]["source_dataset"] == n for r in rows) for n in ("leg_counting", "chain_sum")}
    assert counts["leg_counting"] > counts["chain_sum"] > 0
    with pytest.raises(KeyError, match="no task"):
        list(generate("train", 3, 1, {"nope": {}}))
    assert extract("<answer>a</answer> \\boxed{b}") == "a" and extract("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract("plain") is None and extract("plain", fallback_to_text=True) == "plain"
