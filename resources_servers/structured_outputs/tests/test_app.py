"""structured_outputs over HTTP (in-process), the reference's row, conformance, and the generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.conformance import check_server
from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient
from resources_servers.structured_outputs.app import StructuredOutputsConfig, StructuredOutputsResourcesServer
from resources_servers.structured_outputs.generate import generate, oracle_answer
from resources_servers.structured_outputs.grading import grade, load_schema

ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]


def make_client(**settings: Any) -> ServerClient:
    base = {"name": "env", "entrypoint": "app.py", "domain": "instruction_following", **settings}
    config = StructuredOutputsConfig.model_validate(base)
    return wire({"env": StructuredOutputsResourcesServer(config, ServerClient({}))})


def answered(row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**row, "response": {"output": [message] if text else []}}


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(5))
async def test_verify_example_rows(index: int) -> None:
    client, row = make_client(), EXAMPLES[index]
    good = (await client.post("env", "/verify", json=answered(row, oracle_answer(row)))).json()
    assert good["reward"] == 1.0 and good["schema_valid"] and good["values_matched"] == len(row["expected_values"])
    document = json.loads(oracle_answer(row))
    key = next(iter(document))
    wrong = (await client.post("env", "/verify", json=answered(row, json.dumps({**document, key: None})))).json()
    assert wrong["reward"] == 0.0 and not wrong["schema_valid"]
    empty = (await client.post("env", "/verify", json=answered(row, ""))).json()
    assert empty["reward"] == 0.0 and empty["parsed"] is False
    fenced = "```json\n" + oracle_answer(row) + "\n```"
    assert (await client.post("env", "/verify", json=answered(row, fenced))).json()["reward"] == 0.0
    lenient = make_client(allow_code_fence=True)
    assert (await lenient.post("env", "/verify", json=answered(row, fenced))).json()["reward"] == 1.0


@pytest.mark.anyio
async def test_reference_row_without_expected_values() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}
    row = {"responses_create_params": {"input": [{"role": "user", "content": "x"}]}, "schema_str": json.dumps(schema),
           "schema_type": "json", "schema_fields_count": "2"}
    client = make_client()
    assert (await client.post("env", "/verify", json=answered(row, '{"name": "a", "n": 1}'))).json()["reward"] == 1.0
    assert (await client.post("env", "/verify", json=answered(row, '{"name": "a"}'))).json()["reward"] == 0.0  # strict
    loose = make_client(strict_schema=False)
    assert (await loose.post("env", "/verify", json=answered(row, '{"name": "a"}'))).json()["reward"] == 1.0


@pytest.mark.anyio
async def test_a_broken_schema_is_a_typed_failure() -> None:
    row = {"responses_create_params": {"input": []}, "schema_str": "{not json", "schema_type": "json"}
    reply = await make_client().post("env", "/verify", json=answered(row, "{}"))
    assert reply.status_code == 500 and "schema_str is not JSON" in reply.text


def test_conformance() -> None:
    report = check_server(ENV_DIR, should_validate_data=True)
    assert report.ok, report.format()


def prompt(row: dict[str, Any]) -> str:
    return str(row["responses_create_params"]["input"][0]["content"])


def test_generator() -> None:
    train = list(generate("train", 600, seed=0))
    assert train == list(generate("train", 600, seed=0))
    validation = list(generate("validation", 100, seed=0))
    assert not {prompt(r) for r in train} & {prompt(r) for r in validation}
    for row in train + validation:
        schema = load_schema(row["schema_str"])
        assert grade(oracle_answer(row), schema, row["expected_values"]).reward == 1.0
        assert grade("{}", schema, row["expected_values"]).reward == 0.0
