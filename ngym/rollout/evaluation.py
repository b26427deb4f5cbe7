"""Held-out evaluation: per environment, the mean reward with a 95% confidence interval, pass@1 and
pass@k, tokens and typed failures; and the comparison of two evaluations.

The unit of the interval is the *task*: each task's rollouts are averaged first, then the task means
are averaged, and the interval is Student's t over the task means (rollouts of one task are not
independent draws of the environment). Failed rollouts (``<out>_failures.jsonl``) are counted by
kind and excluded: a failure is not a reward of 0.

Two evaluations are compared per environment on the tasks they share, matched by task *content*
(the prompt and the agent, not the row index, so reordered or resampled inputs still pair): the
paired difference of task means with its interval, and whether that interval excludes zero.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ngym.rollout.metrics import TASK_INDEX, agent_name, pass_at_k, token_usage
from ngym.rollout.output import is_retried

#: two-sided 95% quantiles of Student's t (0.975) by degrees of freedom; between the last entries
#: the quantile is interpolated linearly in 1/df (exact to 3 decimals), beyond them it is the normal's
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    >>> t_quantile_975(1), t_quantile_975(30), round(t_quantile_975(50), 3), round(t_quantile_975(10**6), 3)
    (12.706, 2.042, 2.009, 1.96)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    points = sorted(_T975) + [math.inf]
    hi = next(p for p in points if p > df)
    lo = int(max(p for p in points if p < df))
    q_lo, q_hi = _T975[lo], (_Z975 if hi == math.inf else _T975[int(hi)])
    x, x_lo, x_hi = 1 / df, 1 / lo, (0.0 if hi == math.inf else 1 / hi)
    return q_hi + (q_lo - q_hi) * (x - x_hi) / (x_lo - x_hi)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its two-sided 95% t interval; with one value the interval is that value (unknown spread)."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def task_fingerprint(row: dict[str, Any]) -> str:
    """What a task *is*, independent of its position in a file: the agent and the model's input
    (``responses_create_params.input`` and ``instructions``)."""
    params = row.get("responses_create_params") or {}
    content = {"agent": agent_name(row), "input": params.get("input"), "instructions": params.get("instructions")}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


class EnvironmentEval(BaseModel):
    """The evaluation of one environment (one agent)."""

    agent: str
    tasks: int = Field(description="tasks with at least one scored rollout")
    rollouts: int = Field(description="scored rollouts")
    rollouts_per_task: int = Field(description="the smallest number of scored rollouts of a task (k of pass@k)")
    mean_reward: float = Field(description="mean over tasks of each task's mean reward")
    ci95_low: float
    ci95_high: float
    pass_at_1: float
    pass_at_k: float = Field(description="unbiased pass@k with k = rollouts_per_task")
    mean_output_tokens: float | None = None
    failures: dict[str, int] = Field(default_factory=dict, description="failed rollouts by kind (excluded)")
    task_means: dict[str, float] = Field(default_factory=dict, description="task fingerprint -> mean reward")


class EvalReport(BaseModel):
    pass_threshold: float
    environments: list[EnvironmentEval]


class EnvironmentDiff(BaseModel):
    """``after - before`` for one environment, paired by task content."""

    agent: str
    paired_tasks: int
    before: float
    after: float
    difference: float
    ci95_low: float
    ci95_high: float
    excludes_zero: bool


def evaluate(
    rollouts: Iterable[dict[str, Any]], failures: Iterable[dict[str, Any]] = (), *, pass_threshold: float = 1.0
) -> EvalReport:
    """Evaluate a collection: ``rollouts`` (scored rows) and ``failures`` (rows of the failures file)."""
    rewards: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tokens: dict[str, list[float]] = defaultdict(list)
    for row in rollouts:
        reward = row.get("reward")
        if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
            continue
        agent = agent_name(row)
        task = task_fingerprint(row) if row.get("responses_create_params") else f"index:{row.get(TASK_INDEX)}"
        rewards[agent][task].append(float(reward))
        out = token_usage(row).get("output_tokens")
        if out is not None:
            tokens[agent].append(out)
    failed: dict[str, dict[str, int]] = defaultdict(dict)
    for row in failures:
        if is_retried(row):  # an attempt that was tried again: the rollout's outcome is elsewhere
            continue
        agent, kind = agent_name(row), str(row.get("kind", "unknown"))
        failed[agent][kind] = failed[agent].get(kind, 0) + 1
    environments = []
    for agent in sorted(set(rewards) | set(failed)):
        by_task = rewards.get(agent, {})
        if not by_task:
            environments.append(
                EnvironmentEval(
                    agent=agent, tasks=0, rollouts=0, rollouts_per_task=0, mean_reward=math.nan,
                    ci95_low=math.nan, ci95_high=math.nan, pass_at_1=math.nan, pass_at_k=math.nan,
                    failures=failed.get(agent, {}),
                )
            )
            continue
        means = {task: statistics.fmean(values) for task, values in by_task.items()}
        mean, low, high = mean_interval(list(means.values()))
        k = min(len(values) for values in by_task.values())

        def pass_rate(k: int) -> float:
            return statistics.fmean(
                pass_at_k(len(v), sum(r >= pass_threshold for r in v), k) for v in by_task.values()
            )

        environments.append(
            EnvironmentEval(
                agent=agent,
                tasks=len(by_task),
                rollouts=sum(len(v) for v in by_task.values()),
                rollouts_per_task=k,
                mean_reward=mean,
                ci95_low=low,
                ci95_high=high,
                pass_at_1=pass_rate(1),
                pass_at_k=pass_rate(k),
                mean_output_tokens=statistics.fmean(tokens[agent]) if tokens.get(agent) else None,
                failures=failed.get(agent, {}),
                task_means=means,
            )
        )
    return EvalReport(pass_threshold=pass_threshold, environments=environments)


def compare(before: EvalReport, after: EvalReport) -> list[EnvironmentDiff]:
    """Per environment present in both: the paired difference ``after - before`` over shared tasks."""
    earlier = {e.agent: e for e in before.environments}
    diffs = []
    for env in after.environments:
        base = earlier.get(env.agent)
        if base is None:
            continue
        shared = sorted(set(base.task_means) & set(env.task_means))
        if not shared:
            continue
        deltas = [env.task_means[t] - base.task_means[t] for t in shared]
        mean, low, high = mean_interval(deltas)
        diffs.append(
            EnvironmentDiff(
                agent=env.agent,
                paired_tasks=len(shared),
                before=statistics.fmean(base.task_means[t] for t in shared),
                after=statistics.fmean(env.task_means[t] for t in shared),
                difference=mean,
                ci95_low=low,
                ci95_high=high,
                excludes_zero=len(shared) > 1 and (low > 0 or high < 0),
            )
        )
    return diffs


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: EvalReport) -> str:
    rows = []
    for e in report.environments:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(e.failures.items())) or "-"
        if not e.tasks:
            rows.append([e.agent, "0", "0", "-", "-", "-", "-", "-", fails])
            continue
        rows.append(
            [
                e.agent, str(e.tasks), str(e.rollouts), f"{e.mean_reward:.3f}",
                f"[{e.ci95_low:.3f}, {e.ci95_high:.3f}]", f"{e.pass_at_1:.3f}",
                f"{e.pass_at_k:.3f} (k={e.rollouts_per_task})",
                "-" if e.mean_output_tokens is None else f"{e.mean_output_tokens:.1f}", fails,
            ]
        )
    header = ["environment", "tasks", "rollouts", "mean reward", "95% CI", "pass@1", "pass@k", "out tokens", "failures"]
    return _table(header, rows)


def format_comparison(diffs: list[EnvironmentDiff]) -> str:
    rows = [
        [
            d.agent, str(d.paired_tasks), f"{d.before:.3f}", f"{d.after:.3f}", f"{d.difference:+.3f}",
            f"[{d.ci95_low:+.3f}, {d.ci95_high:+.3f}]", "yes" if d.excludes_zero else "no",
        ]
        for d in diffs
    ]
    header = ["environment", "paired tasks", "before", "after", "difference", "95% CI", "excludes 0"]
    return _table(header, rows)
