"""Reward statistics of a set of rollouts: per agent, per task, and as a printed table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"


def numeric_fields(result: dict[str, Any]) -> dict[str, float]:
    """Top-level numbers and booleans of a rollout, plus its token usage."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key in (TASK_INDEX, ROLLOUT_INDEX):
            continue
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    usage = (result.get("response") or {}).get("usage") or {}
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        if isinstance(usage.get(key), int | float):
            out[key] = float(usage[key])
    return out


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _group_stats(results: list[dict[str, Any]]) -> dict[str, float]:
    columns: dict[str, list[float]] = defaultdict(list)
    for result in results:
        for key, value in numeric_fields(result).items():
            columns[key].append(value)
    stats: dict[str, float] = {}
    for key, values in columns.items():
        for stat, value in summarize(values).items():
            stats[f"{stat}/{key}"] = value
    return stats


def agent_name(result: dict[str, Any]) -> str:
    ref = result.get("agent_ref")
    return str(ref.get("name")) if isinstance(ref, dict) else "?"


def agent_metrics(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per agent: ``agent_ref``, ``count`` and ``mean/...``, ``std/...``, ``min/...``, ``max/...``."""
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_agent[agent_name(result)].append(result)
    return [
        {"agent_ref": {"name": name}, "count": len(rows), **_group_stats(rows)} for name, rows in sorted(by_agent.items())
    ]


def task_profiles(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per task (``_ng_task_index``): reward statistics over its rollouts."""
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_task[int(result.get(TASK_INDEX, -1))].append(result)
    return [
        {TASK_INDEX: task, "agent_ref": {"name": agent_name(rows[0])}, "count": len(rows), **_group_stats(rows)}
        for task, rows in sorted(by_task.items())
    ]


def format_table(metrics: list[dict[str, Any]], failures: dict[str, int] | None = None) -> str:
    """A plain-text table: one row per agent with count, failures, mean reward and mean tokens."""
    failures = failures or {}
    header = ("agent", "rollouts", "failed", "reward mean", "reward std", "reward min", "reward max", "tokens/rollout")
    rows = [header]
    for m in metrics:
        name = m["agent_ref"]["name"]
        rows.append(
            (
                name,
                str(m["count"]),
                str(failures.get(name, 0)),
                f"{m.get('mean/reward', float('nan')):.3f}",
                f"{m.get('std/reward', float('nan')):.3f}",
                f"{m.get('min/reward', float('nan')):.3f}",
                f"{m.get('max/reward', float('nan')):.3f}",
                f"{m.get('mean/total_tokens', 0.0):.0f}",
            )
        )
    for name, count in sorted(failures.items()):
        if not any(m["agent_ref"]["name"] == name for m in metrics):
            rows.append((name, "0", str(count), "-", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- evaluation metrics: per agent and overall, pass@k, mean@k, tokens -----------------------

USAGE_FIELDS = ("input_tokens", "output_tokens", "total_tokens")
USAGE_DETAILS = (("input_tokens_details", "cached_tokens"), ("output_tokens_details", "reasoning_tokens"))
NOT_METRICS = frozenset({TASK_INDEX, ROLLOUT_INDEX})


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``n`` rollouts of which ``c`` passed: ``1 - C(n-c, k) / C(n, k)``.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, and ``n`` itself: the k of pass@k and mean@k."""
    if n < 1:
        return []
    ks = [1 << i for i in range(n.bit_length())]
    return ks + ([n] if ks[-1] != n else [])


def token_usage(result: dict[str, Any]) -> dict[str, float]:
    """Token counts of a rollout's ``response.usage`` (with cached and reasoning tokens when given)."""
    usage = (result.get("response") or {}).get("usage") or {}
    out = {k: float(usage[k]) for k in USAGE_FIELDS if isinstance(usage.get(k), int | float)}
    for parent, key in USAGE_DETAILS:
        detail = usage.get(parent)
        if isinstance(detail, dict) and isinstance(detail.get(key), int | float):
            out[key] = float(detail[key])
    return out


def verify_fields(result: dict[str, Any], task_keys: Collection[str] | None = None) -> dict[str, float]:
    """Top-level numbers and booleans of a rollout; given the keys of its input row, the task fields
    it echoes are left out."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key in NOT_METRICS or (task_keys is not None and key != "reward" and key in task_keys):
            continue
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {**summarize(values), "count": len(values)} if values else {}


def _summary(results: list[dict[str, Any]], inputs: dict[int, frozenset[str]], threshold: float) -> dict[str, Any]:
    fields: dict[str, list[float]] = defaultdict(list)
    tokens: dict[str, list[float]] = defaultdict(list)
    by_task: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, result in enumerate(results):
        task = int(result.get(TASK_INDEX, -1 - i))
        for key, value in verify_fields(result, inputs.get(task)).items():
            fields[key].append(value)
        for key, value in token_usage(result).items():
            tokens[key].append(value)
        reward = result.get("reward")
        if isinstance(reward, int | float) and not isinstance(reward, bool):
            by_task[task].append((int(result.get(ROLLOUT_INDEX, 0)), float(reward)))
    sizes = [len(r) for r in by_task.values()]
    summary: dict[str, Any] = {
        "rollouts": len(results),
        "tasks": len(by_task),
        "rollouts_per_task": {"min": min(sizes, default=0), "max": max(sizes, default=0)},
        "metrics": {key: _stats(values) for key, values in fields.items()},
        "tokens": {key: {"total": sum(v), **_stats(v)} for key, v in tokens.items()},
    }
    if max(sizes, default=0) > 1:
        passes: dict[str, float] = {}
        means: dict[str, float] = {}
        for k in k_values(max(sizes)):
            eligible = [sorted(r) for r in by_task.values() if len(r) >= k]
            passes[f"pass@{k}"] = statistics.fmean(
                pass_at_k(len(r), sum(reward >= threshold for _, reward in r), k) for r in eligible
            )
            means[f"mean@{k}"] = statistics.fmean(statistics.fmean(reward for _, reward in r[:k]) for r in eligible)
        summary["pass@k"] = passes
        summary["mean@k"] = means
    return summary


def aggregate_metrics(
    results: list[dict[str, Any]], inputs: Iterable[dict[str, Any]] | None = None, *, pass_threshold: float = 1.0
) -> dict[str, Any]:
    """Evaluation metrics per agent and overall (what ``<output>_aggregate_metrics.json`` holds).

    Each summary has ``rollouts``, ``tasks``, ``metrics`` (mean/std/min/max/count of the reward and
    every numeric verify field), ``tokens`` (total and mean/std/min/max per rollout) and, when a
    task has more than one rollout, ``pass@k`` (unbiased estimator; a rollout passes when its reward
    is ``>= pass_threshold``) and ``mean@k`` (mean reward of each task's first k rollouts) averaged
    over the tasks with at least k rollouts, for k = 1, 2, 4, ... and the largest count.
    ``inputs`` (materialized input rows, read once) lets task fields echoed in the rollouts be left out.
    """
    by_task_input: dict[int, frozenset[str]] = {}
    shared: dict[frozenset[str], frozenset[str]] = {}
    for row in inputs or []:
        if TASK_INDEX in row:
            keys = frozenset(row)
            by_task_input.setdefault(int(row[TASK_INDEX]), shared.setdefault(keys, keys))
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_agent[agent_name(result)].append(result)
    return {
        "pass_threshold": pass_threshold,
        "overall": _summary(results, by_task_input, pass_threshold),
        "agents": [
            {"agent_ref": {"name": name}, **_summary(rows, by_task_input, pass_threshold)}
            for name, rows in sorted(by_agent.items())
        ],
    }


def reward_profiles(
    results: list[dict[str, Any]], inputs: list[dict[str, Any]] | None = None, *, pass_threshold: float = 1.0
) -> list[dict[str, Any]]:
    """:func:`task_profiles` plus each task's ``pass_rate`` and, given the inputs, its ``sample`` row."""
    samples: dict[int, dict[str, Any]] = {}
    for row in inputs or []:
        if TASK_INDEX in row:
            samples.setdefault(int(row[TASK_INDEX]), {k: v for k, v in row.items() if not k.startswith("_ng_")})
    rewards: dict[int, list[float]] = defaultdict(list)
    for result in results:
        reward = result.get("reward")
        if isinstance(reward, int | float) and not isinstance(reward, bool):
            rewards[int(result.get(TASK_INDEX, -1))].append(float(reward))
    profiles = task_profiles(results)
    for profile in profiles:
        task = profile[TASK_INDEX]
        values = rewards.get(task, [])
        profile["pass_rate"] = sum(r >= pass_threshold for r in values) / len(values) if values else None
        if task in samples:
            profile["sample"] = samples[task]
    return profiles


def format_aggregate_table(aggregate: dict[str, Any]) -> str:
    """Per agent and overall: rollouts, tasks, reward mean/std, pass@k and mean@k, tokens per rollout.

    Up to three values of k are shown; with more (rows repeated many times), k = 1 and the largest."""
    entries = [(a["agent_ref"]["name"], a) for a in aggregate["agents"]] + [("overall", aggregate["overall"])]
    ks = sorted({key for _, s in entries for key in s.get("pass@k", {})}, key=lambda key: int(key.split("@")[1]))
    if len(ks) > 3:  # many repeats: k = 1 and the most repeats only (every k is in the JSON file)
        ks = [ks[0], ks[-1]]
    means = [key.replace("pass", "mean") for key in ks]
    header = ["agent", "rollouts", "tasks", "reward mean", "reward std", *ks, *means, "tokens/rollout"]
    rows = [header]
    for name, s in entries:
        reward = s["metrics"].get("reward", {})
        tokens = s["tokens"].get("total_tokens", {})
        rows.append(
            [
                name,
                str(s["rollouts"]),
                str(s["tasks"]),
                f"{reward['mean']:.3f}" if reward else "-",
                f"{reward['std']:.3f}" if reward else "-",
                *(f"{s['pass@k'][k]:.3f}" if k in s.get("pass@k", {}) else "-" for k in ks),
                *(f"{s['mean@k'][k]:.3f}" if k in s.get("mean@k", {}) else "-" for k in means),
                f"{tokens['mean']:.0f}" if tokens else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
