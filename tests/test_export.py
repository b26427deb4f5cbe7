"""ng_export: rollouts -> chat-format SFT rows and DPO pairs, tool calls kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ngym.errors import InputError
from ngym.data.export import dpo_pairs, input_messages, output_messages, sft_rows

BIN = Path(sys.executable).parent
COMPAT = Path(__file__).resolve().parents[1].parent / "shared" / "compat" / "reference-v0.2.1"

TOOLS = [{"type": "function", "name": "get_weather", "description": "weather", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def rollout(task: int, rollout_index: int, reward: float, final: str = "It is cold.", call: bool = True) -> dict[str, Any]:
    output: list[dict[str, Any]] = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "need weather"}]}]
    if call:
        output += [
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "SF"}', "id": "fc_1"},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"weather": "cold"}'},
        ]
    output.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": final, "annotations": []}]})
    return {
        "responses_create_params": {
            "instructions": "Be brief.",
            "input": [{"role": "developer", "content": "You help."}, {"role": "user", "content": f"weather {task}?"}],
            "tools": TOOLS,
        },
        "response": {"output": output},
        "reward": reward,
        "agent_ref": {"name": "weather_agent"},
        "_ng_task_index": task,
        "_ng_rollout_index": rollout_index,
    }


def test_messages_keep_tool_calls_outputs_and_reasoning() -> None:
    r = rollout(0, 0, 1.0)
    assert input_messages(r) == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "weather 0?"},
    ]
    assert output_messages(r) == [
        {"role": "assistant", "content": None, "reasoning_content": "need weather", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "SF"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"weather": "cold"}'},
        {"role": "assistant", "content": "It is cold."},
    ]


def test_sft_filters_by_min_reward_and_carries_tools() -> None:
    rows = list(sft_rows([("a:1", rollout(0, 0, 1.0)), ("a:2", rollout(0, 1, 0.0)), ("a:3", rollout(1, 0, 0.5))], min_reward=0.5))
    assert [(r["_ng_task_index"], r["reward"]) for r in rows] == [(0, 1.0), (1, 0.5)]
    assert rows[0]["tools"][0] == {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                   "parameters": TOOLS[0]["parameters"]}}
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "system", "user", "assistant", "tool", "assistant"]
    assert len(list(sft_rows([("a:1", rollout(0, 0, 0.0))]))) == 1  # no filter: everything


def test_dpo_pairs_best_vs_worst_per_task_skipping_ties_and_singletons() -> None:
    data = [
        rollout(0, 0, 0.5, "meh"), rollout(0, 1, 1.0, "great"), rollout(0, 2, 0.0, "bad", call=False), rollout(0, 3, 1.0, "also great"),
        rollout(1, 0, 1.0), rollout(1, 1, 1.0),  # tie
        rollout(2, 0, 0.0),  # a single rollout
    ]
    from ngym.data.export import ExportStats

    stats = ExportStats()
    pairs = dpo_pairs([(f"f:{i}", r) for i, r in enumerate(data)], stats=stats)
    assert len(pairs) == 1 and stats.read == 7 and stats.written == 1
    assert stats.skipped == {"tie (best and worst reward equal)": 1, "task with a single rollout": 1}
    pair = pairs[0]
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (1.0, 0.0)
    assert (pair["chosen_rollout_index"], pair["rejected_rollout_index"]) == (1, 2)  # lowest index among the best
    assert pair["chosen"][-1] == {"role": "assistant", "content": "great"}
    assert pair["rejected"] == [{"role": "assistant", "content": "bad", "reasoning_content": "need weather"}]
    assert pair["prompt"][-1] == {"role": "user", "content": "weather 0?"} and pair["_ng_task_index"] == 0
    assert len(dpo_pairs([("f", r) for r in data], min_margin=0.9)) == 1
    assert len(dpo_pairs([("f", r) for r in data], min_margin=1.0)) == 0


def test_bad_rollouts_are_errors_naming_the_line() -> None:
    with pytest.raises(InputError, match="f:3: no numeric 'reward'"):
        list(sft_rows([("f:3", {**rollout(0, 0, 1.0), "reward": None})]))
    with pytest.raises(InputError, match="f:4: no 'response'"):
        list(sft_rows([("f:4", {"responses_create_params": {"input": "x"}, "reward": 1.0})]))


def test_ng_export_command_on_the_reference_rollouts(tmp_path: Path) -> None:
    source = COMPAT / "example_multi_step" / "example_rollouts.jsonl"
    if not source.exists():
        pytest.skip("shared/compat is not beside this checkout")
    out = tmp_path / "sft.jsonl"
    done = subprocess.run(
        [str(BIN / "ng_export"), f"+input_jsonl_fpath={source}", f"+output_jsonl_fpath={out}", "+format=sft", "+min_reward=0.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rollouts = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    kept = [r for r in rollouts if r["reward"] >= 0.5]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(kept) > 0 and f"{len(kept)} SFT rows from {len(rollouts)} rollouts" in done.stdout
    assert any(m.get("tool_calls") for r in rows for m in r["messages"])
    assert any(m["role"] == "tool" for r in rows for m in r["messages"])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"reward": 1}\nnot json\n')
    done = subprocess.run([str(BIN / "ng_export"), f"+input_jsonl_fpath={bad}", f"+output_jsonl_fpath={tmp_path / 'x.jsonl'}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad.jsonl:1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.jsonl").exists()
