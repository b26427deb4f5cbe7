"""Reward statistics of a set of rollouts: per agent, per task, and as a printed table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
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
