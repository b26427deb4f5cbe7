"""Evaluation metrics after collection: per agent and overall stats, pass@k (unbiased), mean@k,
tokens, and ng_reward_profile recomputing them from files."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ngym.rollout.metrics import (
    ROLLOUT_INDEX,
    TASK_INDEX,
    agent_metrics,
    aggregate_metrics,
    format_aggregate_table,
    k_values,
    pass_at_k,
    reward_profiles,
    task_profiles,
)

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO.parent / "shared" / "compat" / "reference-v0.2.1"
BIN = Path(sys.executable).parent


def rollout(agent: str, task: int, index: int, reward: float, **extra: Any) -> dict[str, Any]:
    usage = {
        "input_tokens": 10 * (task + 1),
        "output_tokens": 2,
        "total_tokens": 10 * (task + 1) + 2,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    return {
        "agent_ref": {"name": agent},
        TASK_INDEX: task,
        ROLLOUT_INDEX: index,
        "reward": reward,
        "response": {"usage": usage},
        **extra,
    }


def brute_pass_at_k(outcomes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_is_the_probability_over_all_k_subsets(n: int) -> None:
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(outcomes, k))


def test_pass_at_k_rejects_impossible_counts() -> None:
    for n, c, k in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (2, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_k_values_are_powers_of_two_and_n() -> None:
    assert [k_values(n) for n in (0, 1, 2, 3, 4, 6, 8)] == [
        [],
        [1],
        [1, 2],
        [1, 2, 3],
        [1, 2, 4],
        [1, 2, 4, 6],
        [1, 2, 4, 8],
    ]


@pytest.fixture
def results() -> list[dict[str, Any]]:
    """Agent a: task 0 passes 1 of 4, task 1 passes 3 of 4; agent b: task 2 with 2 rollouts (0.5, 1.0)."""
    rows = [
        rollout("a", 0, 3, 0.0, accuracy=False, score=0.1, expected=7),
        rollout("a", 0, 0, 1.0, accuracy=True, score=0.9, expected=7),
        rollout("a", 0, 1, 0.0, accuracy=False, score=0.2, expected=7),
        rollout("a", 0, 2, 0.0, accuracy=False, score=0.3, expected=7),
        rollout("a", 1, 0, 0.0, accuracy=False, score=0.0, expected=8),
        rollout("a", 1, 1, 1.0, accuracy=True, score=1.0, expected=8),
        rollout("a", 1, 2, 1.0, accuracy=True, score=1.0, expected=8),
        rollout("a", 1, 3, 1.0, accuracy=True, score=1.0, expected=8),
        rollout("b", 2, 1, 1.0),
        rollout("b", 2, 0, 0.5),
    ]
    return rows


def inputs_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "responses_create_params": {"input": "q"},
            "agent_ref": r["agent_ref"],
            TASK_INDEX: r[TASK_INDEX],
            ROLLOUT_INDEX: r[ROLLOUT_INDEX],
            **({"expected": r["expected"]} if "expected" in r else {}),
        }
        for r in results
    ]


def test_aggregate_per_agent_and_overall(results: list[dict[str, Any]]) -> None:
    agg = aggregate_metrics(results, inputs_of(results))
    a, b = (entry for entry in agg["agents"])
    assert a["agent_ref"] == {"name": "a"} and b["agent_ref"] == {"name": "b"}
    assert (a["rollouts"], a["tasks"], a["rollouts_per_task"]) == (8, 2, {"min": 4, "max": 4})
    rewards_a = [r["reward"] for r in results[:8]]
    assert a["metrics"]["reward"] == pytest.approx(
        {"mean": statistics.fmean(rewards_a), "std": statistics.stdev(rewards_a), "min": 0.0, "max": 1.0, "count": 8}
    )
    assert a["metrics"]["accuracy"]["mean"] == pytest.approx(0.5)  # booleans as 0/1
    assert a["metrics"]["score"]["max"] == 1.0
    assert "expected" not in a["metrics"]  # a task field echoed from the input row
    # pass@k: task 0 has c=1 of n=4, task 1 has c=3 of 4
    assert a["pass@k"] == pytest.approx(
        {"pass@1": (1 / 4 + 3 / 4) / 2, "pass@2": (pass_at_k(4, 1, 2) + pass_at_k(4, 3, 2)) / 2, "pass@4": 1.0}
    )
    # mean@k: the first k rollouts by rollout index (task 0: 1,0,0,0; task 1: 0,1,1,1)
    assert a["mean@k"] == pytest.approx(
        {"mean@1": (1.0 + 0.0) / 2, "mean@2": (0.5 + 0.5) / 2, "mean@4": (0.25 + 0.75) / 2}
    )
    assert b["pass@k"] == pytest.approx({"pass@1": 0.5, "pass@2": 1.0})
    assert b["mean@k"] == pytest.approx({"mean@1": 0.5, "mean@2": 0.75})
    overall = agg["overall"]
    assert (overall["rollouts"], overall["tasks"]) == (10, 3)
    # pass@1 over all 3 tasks; pass@4 only over the two tasks with 4 rollouts
    assert overall["pass@k"]["pass@1"] == pytest.approx((0.25 + 0.75 + 0.5) / 3)
    assert overall["pass@k"]["pass@4"] == pytest.approx(1.0)
    tokens = overall["tokens"]
    assert tokens["input_tokens"]["total"] == 4 * 10 + 4 * 20 + 2 * 30
    assert tokens["cached_tokens"]["total"] == 40 and tokens["reasoning_tokens"]["mean"] == 1.0
    assert tokens["total_tokens"]["max"] == 32.0


def test_task_fields_count_as_metrics_without_inputs(results: list[dict[str, Any]]) -> None:
    assert "expected" in aggregate_metrics(results)["agents"][0]["metrics"]


def test_pass_threshold(results: list[dict[str, Any]]) -> None:
    strict = aggregate_metrics(results, pass_threshold=1.0)["agents"][1]
    lenient = aggregate_metrics(results, pass_threshold=0.5)["agents"][1]
    assert strict["pass@k"]["pass@1"] == pytest.approx(0.5) and lenient["pass@k"]["pass@1"] == pytest.approx(1.0)


def test_no_pass_at_k_with_one_rollout_per_task() -> None:
    agg = aggregate_metrics([rollout("a", 0, 0, 1.0), rollout("a", 1, 0, 0.0)])
    assert "pass@k" not in agg["overall"] and "mean@k" not in agg["agents"][0]
    assert agg["overall"]["metrics"]["reward"]["mean"] == 0.5
    table = format_aggregate_table(agg)
    assert "pass@" not in table and "overall" in table


def test_aggregate_of_nothing() -> None:
    agg = aggregate_metrics([])
    assert agg["agents"] == [] and agg["overall"]["rollouts"] == 0 and agg["overall"]["metrics"] == {}


def test_reward_profiles_add_pass_rate_and_sample(results: list[dict[str, Any]]) -> None:
    inputs = [{**row, "_ng_input_line": 3} for row in inputs_of(results)]
    profiles = reward_profiles(results, inputs)
    base = task_profiles(results)
    assert [{k: v for k, v in p.items() if k not in ("pass_rate", "sample")} for p in profiles] == base
    assert [p["pass_rate"] for p in profiles] == [0.25, 0.75, 0.5]
    assert profiles[0]["sample"] == {
        "responses_create_params": {"input": "q"},
        "agent_ref": {"name": "a"},
        "expected": 7,
    }


def test_table_lists_pass_and_mean_at_k(results: list[dict[str, Any]]) -> None:
    table = format_aggregate_table(aggregate_metrics(results))
    header, _, row_a, row_b, overall = table.splitlines()
    assert header.split() == [
        "agent",
        "rollouts",
        "tasks",
        "reward",
        "mean",
        "reward",
        "std",
        "pass@1",
        "pass@2",
        "pass@4",
        "mean@1",
        "mean@2",
        "mean@4",
        "tokens/rollout",
    ]
    assert row_a.split()[:3] == ["a", "8", "2"] and row_b.split()[7] == "-"  # b has no pass@4
    assert overall.startswith("overall")


def test_table_with_many_repeats_shows_k_1_and_the_largest() -> None:
    rows = [{"agent_ref": {"name": "a"}, "responses_create_params": {"input": "q"}, "reward": float(i % 2), "_ng_task_index": 0,
             "_ng_rollout_index": i} for i in range(800)]
    aggregate = aggregate_metrics(rows)
    assert len(aggregate["overall"]["pass@k"]) == 11  # 1, 2, 4, ..., 512 and 800: all kept in the JSON
    header = format_aggregate_table(aggregate).splitlines()[0].split()
    assert [h for h in header if "@" in h] == ["pass@1", "pass@800", "mean@1", "mean@800"]


@pytest.mark.skipif(not COMPAT.exists(), reason="reference data not found")
def test_reference_recorded_rollouts() -> None:
    rows = [
        json.loads(line) for line in (COMPAT / "example_multi_step" / "example_rollouts.jsonl").read_text().splitlines()
    ]
    agg = aggregate_metrics(rows)
    assert agg["overall"]["metrics"]["reward"]["mean"] == pytest.approx(statistics.fmean(r["reward"] for r in rows))
    assert agg["overall"]["tokens"]["total_tokens"]["total"] == sum(
        r["response"]["usage"]["total_tokens"] for r in rows
    )


# ---- ng_reward_profile ---------------------------------------------------------------------------


def ng(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ng_reward_profile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_reward_profile_recomputes_the_files(tmp_path: Path, results: list[dict[str, Any]]) -> None:
    (tmp_path / "env.yaml").write_text("")
    stripped = [{k: v for k, v in r.items() if k != "agent_ref"} for r in results]  # the reference's rollouts lack it
    write_jsonl(tmp_path / "out.jsonl", stripped)
    write_jsonl(
        tmp_path / "out_materialized_inputs.jsonl",
        inputs_of(results)
        + [{"responses_create_params": {"input": "q"}, "agent_ref": {"name": "b"}, TASK_INDEX: 9, ROLLOUT_INDEX: 0}],
    )
    proc = ng("+rollouts_jsonl_fpath=out.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 input row(s) have no rollout" in proc.stdout and "pass@4" in proc.stdout
    aggregate = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
    assert aggregate == json.loads(json.dumps(aggregate_metrics(results, inputs_of(results))))
    profiles = [json.loads(line) for line in (tmp_path / "out_reward_profiling.jsonl").read_text().splitlines()]
    assert [p["pass_rate"] for p in profiles] == [0.25, 0.75, 0.5] and all("sample" in p for p in profiles)
    assert [m["agent_ref"]["name"] for m in json.loads((tmp_path / "out_agent_metrics.json").read_text())] == ["a", "b"]
    assert json.loads((tmp_path / "out_agent_metrics.json").read_text()) == json.loads(
        json.dumps(agent_metrics(results))
    )


def test_reward_profile_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"reward": 1}\n{oops\n{"reward": 0}\n')
    proc = ng("+rollouts_jsonl_fpath=bad.jsonl", cwd=tmp_path)
    assert proc.returncode == 2 and "bad.jsonl:2: not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    proc = ng("+rollouts_jsonl_fpath=missing.jsonl", cwd=tmp_path)
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr
    proc = ng(cwd=tmp_path)
    assert proc.returncode == 2 and "+rollouts_jsonl_fpath=... is required" in proc.stderr
