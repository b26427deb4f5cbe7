"""Held-out evaluation (ngym.rollout.evaluation, ng_eval): intervals, pass@k, failures, comparison."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ngym.rollout.evaluation import compare, evaluate, format_report, mean_interval, t_quantile_975

REPO = Path(__file__).resolve().parents[1]


def rollout(agent: str, prompt: str, reward: float, rollout_index: int = 0, output_tokens: int = 10) -> dict[str, Any]:
    return {
        "agent_ref": {"name": agent},
        "responses_create_params": {"input": [{"role": "user", "content": prompt}]},
        "response": {"output": [], "usage": {"input_tokens": 5, "output_tokens": output_tokens, "total_tokens": 15}},
        "reward": reward,
        "_ng_task_index": int(prompt.split()[-1]) if prompt.split()[-1].isdigit() else 0,
        "_ng_rollout_index": rollout_index,
    }


def test_t_quantiles_match_the_tables() -> None:
    assert t_quantile_975(1) == 12.706
    assert t_quantile_975(9) == 2.262
    assert abs(t_quantile_975(50) - 2.009) < 0.002
    assert abs(t_quantile_975(100) - 1.984) < 0.002
    assert abs(t_quantile_975(10_000) - 1.960) < 0.001
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_interval_by_hand() -> None:
    mean, low, high = mean_interval([0.0, 1.0, 1.0, 0.0, 1.0])
    half = 2.776 * statistics.stdev([0.0, 1.0, 1.0, 0.0, 1.0]) / 5**0.5
    assert mean == 0.6 and low == pytest.approx(0.6 - half) and high == pytest.approx(0.6 + half)
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)


def test_task_means_first_then_pass_at_k_and_failures_excluded() -> None:
    rows = [
        # task 0: 2 of 2 pass; task 1: 1 of 2; task 2: 0 of 2
        rollout("math", "q 0", 1.0, 0), rollout("math", "q 0", 1.0, 1),
        rollout("math", "q 1", 1.0, 0), rollout("math", "q 1", 0.0, 1),
        rollout("math", "q 2", 0.0, 0), rollout("math", "q 2", 0.0, 1, output_tokens=30),
        rollout("mcqa", "x 0", 0.5, 0),
    ]
    failures = [{"agent_ref": {"name": "math"}, "kind": "timeout"}, {"agent_ref": {"name": "code"}, "kind": "model_error"}]
    report = evaluate(rows, failures)
    by = {e.agent: e for e in report.environments}
    math_ = by["math"]
    assert (math_.tasks, math_.rollouts, math_.rollouts_per_task) == (3, 6, 2)
    assert math_.mean_reward == pytest.approx(0.5)
    assert math_.pass_at_1 == pytest.approx((1 + 0.5 + 0) / 3)
    assert math_.pass_at_k == pytest.approx((1 + 1 + 0) / 3)
    assert math_.mean_output_tokens == pytest.approx((10 * 5 + 30) / 6)
    assert math_.failures == {"timeout": 1}
    assert math_.ci95_low < 0.5 < math_.ci95_high
    # partial credit is a mean, not a pass (threshold 1.0)
    assert by["mcqa"].mean_reward == 0.5 and by["mcqa"].pass_at_1 == 0.0
    # an environment whose every rollout failed is reported, not dropped, and not scored 0
    assert by["code"].tasks == 0 and by["code"].failures == {"model_error": 1}
    assert "model_error 1" in format_report(report)


def test_non_numeric_rewards_are_not_scored() -> None:
    rows = [rollout("a", "q 0", 1.0), {**rollout("a", "q 1", 0.0), "reward": None}, {**rollout("a", "q 2", 0.0), "reward": True}]
    assert evaluate(rows).environments[0].tasks == 1


def simulate(p: float, tasks: int, k: int, rng: random.Random, agent: str = "env") -> list[dict[str, Any]]:
    """A policy of known accuracy: each task's difficulty varies around p, each sample is a coin flip."""
    rows = []
    for t in range(tasks):
        q = min(1.0, max(0.0, p + rng.uniform(-0.2, 0.2)))
        rows += [rollout(agent, f"task {t}", float(rng.random() < q), i) for i in range(k)]
    return rows


def test_a_policy_of_known_accuracy_is_inside_its_interval_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    covered = 0
    runs = 300
    for _ in range(runs):
        env = evaluate(simulate(0.3, tasks=40, k=4, rng=rng)).environments[0]
        covered += env.ci95_low <= 0.3 <= env.ci95_high
    assert 0.90 <= covered / runs <= 0.99, covered / runs


def test_compare_pairs_by_task_content_not_position() -> None:
    rng = random.Random(3)
    before = simulate(0.2, tasks=60, k=2, rng=rng)
    after = simulate(0.8, tasks=60, k=2, rng=rng)
    after.reverse()  # another order: the pairing must not depend on it
    for i, row in enumerate(after):
        row["_ng_task_index"] = i
    (diff,) = compare(evaluate(before), evaluate(after))
    assert diff.paired_tasks == 60
    assert diff.difference == pytest.approx(diff.after - diff.before)
    assert diff.excludes_zero and diff.ci95_low > 0.3
    # the same policy twice: the interval of the difference holds zero
    same_a = simulate(0.5, tasks=60, k=2, rng=random.Random(1))
    same_b = simulate(0.5, tasks=60, k=2, rng=random.Random(2))
    (same,) = compare(evaluate(same_a), evaluate(same_b))
    assert same.ci95_low < 0 < same.ci95_high and not same.excludes_zero


def ng_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; sys.argv[0] = 'ng_eval'; from ngym.cli.eval import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ng_eval_on_a_rollouts_file_writes_the_report_and_compares(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("")
    rng = random.Random(5)
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_text("".join(json.dumps(r) + "\n" for r in simulate(0.1, 30, 2, rng)))
    after.write_text("".join(json.dumps(r) + "\n" for r in simulate(0.9, 30, 2, rng)))
    (tmp_path / "after_failures.jsonl").write_text(json.dumps({"agent_ref": {"name": "env"}, "kind": "timeout"}) + "\n")
    first = ng_eval(f"+rollouts_jsonl_fpath={before}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    saved = json.loads((tmp_path / "before_eval.json").read_text())
    assert saved["environments"][0]["tasks"] == 30
    second = ng_eval(f"+rollouts_jsonl_fpath={after}", f"+compare_to={tmp_path / 'before_eval.json'}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "timeout 1" in second.stdout
    line = next(line for line in second.stdout.splitlines() if line.startswith("env ") and "yes" in line)
    assert "+0." in line


def test_ng_eval_without_inputs_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("")
    result = ng_eval(cwd=tmp_path)
    assert result.returncode == 2
    assert "+rollouts_jsonl_fpath" in result.stderr and "+input_jsonl_fpath" in result.stderr
    missing = ng_eval("+rollouts_jsonl_fpath=nope.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
