"""A verifiers (0.4) taskset served as an ngym environment: its tasks as rows, its rewards as the
reward, multi-turn tool calls read from the episode; refusals. Skipped without ``verifiers``."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("verifiers.v1")

from ngym.devkit.testing.asgi import wire  # noqa: E402
from ngym.interop.verifiers_env import UnsupportedTaskset, VerifiersServer, rows  # noqa: E402
from tests.fakes import make  # noqa: E402

pytestmark = pytest.mark.anyio

SPEC = "tests.interop.vf_tasksets.arithmetic:SumTaskset"


def said(text: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"output": [*items, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


@pytest.fixture
def client() -> Any:
    return wire({"env": make(VerifiersServer, "env", domain="math", taskset=SPEC)})


def test_rows_carry_the_prompt_and_the_task() -> None:
    made = rows(SPEC, "agent")
    assert len(made) == 5
    assert made[0]["responses_create_params"]["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+3? Answer with the number only."},
    ]
    assert [r["vf_task_idx"] for r in made] == [0, 1, 2, 3, 4] and len(made[0]["vf_task_key"]) == 64


async def test_rewards_right_wrong_and_hacked(client: Any) -> None:
    row = rows(SPEC, "agent")[1]  # 10 + 5
    for text, reward in (("15", 1.0), ("It is 15.", 1.0), ("**15**", 1.0), ("16", 0.0), ("15 or 16", 0.0), ("", 0.0)):
        got = (await client.post("env", "/verify", json={**row, "response": said(text)})).json()
        assert got["reward"] == reward, (text, got)
        assert got["vf_rewards"]["correct"] == reward and got["vf_metrics"] == {"turns": 1.0}


async def test_multi_turn_tool_calls_reach_the_rubric(client: Any) -> None:
    row = rows(SPEC, "agent")[0]
    call = {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a": 2, "b": 3}'}
    result = {"type": "function_call_output", "call_id": "c1", "output": "5"}
    got = (await client.post("env", "/verify", json={**row, "response": said("5", call, result)})).json()
    assert got["reward"] == 1.5 and got["vf_rewards"] == {"correct": 1.0, "used_calculator": 1.0}
    assert got["vf_metrics"] == {"turns": 2.0}


async def test_a_row_for_another_task_is_bad_input(client: Any) -> None:
    row = {**rows(SPEC, "agent")[0], "vf_task_key": "0" * 64}
    answer = await client.post("env", "/verify", json={**row, "response": said("5")})
    assert answer.status_code == 400 and answer.json()["kind"] == "bad_input" and "changed" in answer.json()["error"]
    answer = await client.post("env", "/verify", json={**row, "vf_task_idx": 99, "response": said("5")})
    assert answer.status_code == 400 and "no task 99" in answer.json()["error"]


def test_rewards_needing_a_sandbox_are_refused() -> None:
    with pytest.raises(UnsupportedTaskset, match=r"SandboxTask.tests_pass .* needs the runtime"):
        make(VerifiersServer, "env", domain="math", taskset="tests.interop.vf_tasksets.arithmetic:SandboxTaskset")
    with pytest.raises(UnsupportedTaskset, match="cannot be imported"):
        rows("tests.interop.vf_tasksets.nothing:X", "agent")
