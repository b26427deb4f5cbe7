from __future__ import annotations

import json

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.devkit.testing.replay import replay
from resources_servers.example_multi_step.app import MultiStepResourcesServer, synonym_value
from tests.fakes import COMPAT, call, compat_rows, make, say

pytestmark = pytest.mark.anyio

METRICS = ("parsed_synonym_values", "accuracy", "set_overlap", "original_term_minefield_hit", "order_instruction_following_failure")


@pytest.fixture
def client():
    return wire({"env": make(MultiStepResourcesServer, "env", domain="instruction_following")})


def row_with(output: list) -> dict:
    row = json.loads(open("resources_servers/example_multi_step/data/example.jsonl").readline())
    row["response"] = {"output": [item.model_dump(mode="json", exclude_none=True) for item in output]}
    return row


async def test_synonym_values() -> None:
    assert (synonym_value("Blazing"), synonym_value("Warm"), synonym_value("Hot")) == (711, 407, 299)


async def test_tools(client) -> None:
    assert (await client.post("env", "/get_synonym_value", json={"synonym": "Blazing"})).json() == {"synonym_value": 711}
    assert (await client.post("env", "/extract_synonym_values", json={"synonym_values": [1]})).json() == {"success": True}


@pytest.mark.parametrize(
    ("extracted", "reward", "order_failure", "minefield"),
    [([711, 407], 1.0, False, False), ([407, 711], 0.0, True, False), ([299, 711, 407], 0.0, True, True), ([], 0.0, False, False)],
)
async def test_verify(client, extracted, reward, order_failure, minefield) -> None:
    output = [call("extract_synonym_values", {"synonym_values": [1]}), call("extract_synonym_values", {"synonym_values": extracted}), say("ok")]
    result = (await client.post("env", "/verify", json=row_with(output))).json()
    assert result["reward"] == reward
    assert result["order_instruction_following_failure"] is order_failure
    assert result["original_term_minefield_hit"] is minefield


async def test_verify_with_unparseable_final_arguments_is_reward_zero(client) -> None:
    answer = await client.post("env", "/verify", json=row_with([call("extract_synonym_values", "{oops")]))
    assert answer.status_code == 200
    assert answer.json()["reward"] == 0.0


@pytest.mark.skipif(not COMPAT.exists(), reason="shared/compat not present")
async def test_replaying_recorded_rollouts_gives_recorded_rewards_and_metrics(client) -> None:
    inputs = compat_rows("example_multi_step")
    for rollout, task in zip(compat_rows("example_multi_step", "example_rollouts.jsonl"), inputs, strict=False):
        row = {**rollout}
        # the recorded rows dropped the task fields; they are the same for every example row
        row.update({k: task[k] for k in ("expected_synonym_values", "expected_synonyms", "minefield_label", "minefield_label_value")})
        result = await replay(client, "env", row)
        assert result.status == 200, result.verify
        assert result.tool_mismatches == []
        assert result.verify["reward"] == rollout["reward"]
        assert {k: result.verify[k] for k in METRICS} == {k: rollout[k] for k in METRICS}
