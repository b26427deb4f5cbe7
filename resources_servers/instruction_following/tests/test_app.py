"""instruction_following over HTTP (in-process), the reference's example row, conformance, generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.conformance import check_server
from ngym.env import EnvConfig
from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient
from resources_servers.instruction_following.app import InstructionFollowingResourcesServer
from resources_servers.instruction_following.generate import generate, oracle_response
from resources_servers.instruction_following.grading import grade

ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]
# the reference's first example row (its format: id, instruction_id_list, prompt, kwargs; no grading_mode)
REFERENCE_ROW = {
    "id": 17616,
    "instruction_id_list": ["length_constraints:nth_paragraph_first_word", "last_word:last_word_answer"],
    "prompt": "Write about Oliver. There should be 4 paragraphs. Paragraph 3 must start with word crash and The last word of your response should be the word contest",
    "kwargs": [{"num_paragraphs": 4, "nth_paragraph": 3, "first_word": "crash"}, {"last_word": "contest"}],
    "responses_create_params": {"input": [{"role": "user", "content": "Write about Oliver."}], "tools": [], "parallel_tool_calls": False},
}


@pytest.fixture
def client() -> ServerClient:
    config = EnvConfig.model_validate(
        {"name": "env", "entrypoint": "app.py", "domain": "instruction_following"})
    return wire({"env": InstructionFollowingResourcesServer(config, ServerClient({}))})


def answered(row: dict[str, Any], *texts: str) -> dict[str, Any]:
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t}]} for t in texts]
    return {**row, "response": {"output": output}}


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(5))
async def test_verify_example_rows(client: ServerClient, index: int) -> None:
    row = EXAMPLES[index]
    good = (await client.post("env", "/verify", json=answered(row, oracle_response(row)))).json()
    assert good["reward"] == 1.0 and good["follow_all_instructions"] is True
    assert len(good["instruction_details"]) == len(row["instruction_id_list"])
    empty = (await client.post("env", "/verify", json=answered(row))).json()
    assert empty["reward"] == 0.0 and empty["follow_instruction_list"] == [False] * len(row["instruction_id_list"])


@pytest.mark.anyio
async def test_reference_row_binary_and_fraction(client: ServerClient) -> None:
    good = "Oliver wakes.\n\nHe remembers.\n\nCrash of waves.\n\nHe wins the contest"
    result = (await client.post("env", "/verify", json=answered(REFERENCE_ROW, good))).json()
    assert result["reward"] == 1.0 and result["id"] == 17616
    # only the last message is the answer: an earlier draft does not count
    result = (await client.post("env", "/verify", json=answered(REFERENCE_ROW, good, "Draft."))).json()
    assert result["reward"] == 0.0
    half = {**REFERENCE_ROW, "grading_mode": "fraction"}
    result = (await client.post("env", "/verify", json=answered(half, good.replace("contest", "race")))).json()
    assert result["reward"] == 0.5 and result["follow_instruction_list"] == [True, False]
    assert "last word 'race'" in result["instruction_details"][1]["detail"]


@pytest.mark.anyio
async def test_unknown_instruction_is_a_typed_failure(client: ServerClient) -> None:
    row = {**REFERENCE_ROW, "instruction_id_list": ["made:up"], "kwargs": [None]}
    reply = await client.post("env", "/verify", json=answered(row, "text"))
    assert reply.status_code == 500 and "unknown instruction id 'made:up'" in reply.text


def test_conformance() -> None:
    report = check_server(ENV_DIR, should_validate_data=True)
    assert report.ok, report.format()


def test_generator() -> None:
    train = list(generate("train", 300, seed=0))
    assert train == list(generate("train", 300, seed=0))
    validation = list(generate("validation", 50, seed=0))
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in validation}
    for row in train + validation:
        assert 1 <= len(row["instruction_id_list"]) <= 3
        assert grade(oracle_response(row), row["instruction_id_list"], row["kwargs"], row["grading_mode"]).reward == 1.0
        assert grade("", row["instruction_id_list"], row["kwargs"], row["grading_mode"]).reward == 0.0


def test_ng_prepare_data_runs_the_generator(tmp_path: Path) -> None:
    """As ng_prepare_data loads it: by file path, with the environment's modules importable."""
    from ngym.config.schema import DatasetConfig
    from ngym.data.generators import run_generator

    config = DatasetConfig(name="validation", type="validation", jsonl_fpath=str(tmp_path / "v.jsonl"),
                           generator=str(ENV_DIR / "generate.py"), num_rows=5, license="Apache 2.0")
    path, rows = run_generator(config)
    assert rows == 5 and [json.loads(line)["id"] for line in path.read_text().splitlines()] == list(range(5))
