"""ng_reward_profile: recompute a collection's metrics from its rollouts file, without re-running anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.rollout.collect import sibling
from ngym.config.paths import resolve_path
from ngym.errors import InputError
from ngym.rollout.metrics import (
    ROLLOUT_INDEX,
    TASK_INDEX,
    agent_metrics,
    aggregate_metrics,
    format_aggregate_table,
    format_table,
    reward_profiles,
)

SUMMARY = """\
Recompute the per-task reward profile (mean/std/min/max and pass rate of each task), the per-agent
metrics and the aggregate metrics (pass@k, mean@k, tokens) of a rollouts file, and write them next
to it: <stem>_reward_profiling.jsonl, <stem>_agent_metrics.json, <stem>_aggregate_metrics.json.

  ng_reward_profile +rollouts_jsonl_fpath=results/out.jsonl
  ng_reward_profile +rollouts_jsonl_fpath=results/out.jsonl \
      +materialized_inputs_jsonl_fpath=results/out_materialized_inputs.jsonl"""


class RewardProfileArgs(BaseModel):
    """Recompute metrics from a rollouts file.

    The materialized inputs (written by ng_collect_rollouts) give each task's input row (`sample`),
    the agent of rollouts without `agent_ref`, and let task fields be told apart from verify fields.
    Without the argument, `<stem>_materialized_inputs.jsonl` next to the rollouts is used if present.
    """

    rollouts_jsonl_fpath: str = Field(description="rollouts written by ng_collect_rollouts")
    materialized_inputs_jsonl_fpath: str | None = Field(None, description="its <stem>_materialized_inputs.jsonl")
    pass_threshold: float = Field(1.0, description="a rollout passes when its reward is >= this (pass@k, pass rate)")


def read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """Every JSON object of a file; a bad line is an error naming file:line (a cut-off last line is skipped)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read the {what} {str(path)!r}: {e.strerror}. Check the path.") from None
    rows: list[dict[str, Any]] = []
    lines = data.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if lineno == len(lines) and not data.endswith(b"\n"):
                print(f"warning: {path}:{lineno}: the last line is cut off; it is left out.", file=sys.stderr)
                continue
            raise InputError(
                f"{path}:{lineno}: not valid JSON ({e}). The {what} must hold one JSON object per line."
            ) from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: a row must be a JSON object, not {type(row).__name__}.")
        rows.append(row)
    return rows


def _join(rollouts: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> list[str]:
    """Fill indices and agent_ref of rollouts from their inputs; return notes for the user."""
    notes: list[str] = []
    unindexed = [r for r in rollouts if TASK_INDEX not in r]
    for i, rollout in enumerate(unindexed):
        rollout[TASK_INDEX], rollout[ROLLOUT_INDEX] = -1 - i, 0
    if unindexed:
        notes.append(f"{len(unindexed)} rollout(s) have no {TASK_INDEX}; each is counted as its own task.")
    by_key = {(r.get(TASK_INDEX), r.get(ROLLOUT_INDEX)): r for r in inputs}
    for rollout in rollouts:
        row = by_key.get((rollout[TASK_INDEX], rollout.get(ROLLOUT_INDEX)))
        if "agent_ref" not in rollout and row is not None and isinstance(row.get("agent_ref"), dict):
            rollout["agent_ref"] = row["agent_ref"]
    if inputs:
        done = {(r[TASK_INDEX], r.get(ROLLOUT_INDEX)) for r in rollouts}
        missing = sum(1 for key in by_key if key not in done)
        if missing:
            notes.append(f"{missing} input row(s) have no rollout (failed or not run yet).")
    return notes


@entrypoint("ng_reward_profile", SUMMARY, RewardProfileArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_reward_profile", model=RewardProfileArgs)
    args = command_args(cfg, RewardProfileArgs, "ng_reward_profile")
    path = resolve_path(args.rollouts_jsonl_fpath)
    rollouts = read_jsonl(path, "rollouts file")
    if args.materialized_inputs_jsonl_fpath is not None:
        inputs_path: Path | None = resolve_path(args.materialized_inputs_jsonl_fpath)
    else:
        default = sibling(path, "_materialized_inputs.jsonl")
        inputs_path = default if default.is_file() else None
    inputs = read_jsonl(inputs_path, "materialized inputs file") if inputs_path is not None else []
    notes = _join(rollouts, inputs)
    no_reward = sum(1 for r in rollouts if not isinstance(r.get("reward"), int | float))
    if no_reward:
        notes.append(f"{no_reward} rollout(s) have no numeric reward.")

    profiles = reward_profiles(rollouts, inputs, pass_threshold=args.pass_threshold)
    metrics = agent_metrics(rollouts)
    aggregate = aggregate_metrics(rollouts, inputs, pass_threshold=args.pass_threshold)
    outputs = {
        "Reward profiling": (sibling(path, "_reward_profiling.jsonl"), "".join(json.dumps(p) + "\n" for p in profiles)),
        "Agent metrics": (sibling(path, "_agent_metrics.json"), json.dumps(metrics, indent=2) + "\n"),
        "Aggregate metrics": (sibling(path, "_aggregate_metrics.json"), json.dumps(aggregate, indent=2) + "\n"),
    }
    for target, text in outputs.values():
        target.write_text(text)
    print(format_table(metrics))
    print("\n" + format_aggregate_table(aggregate))
    print(f"\n{len(rollouts)} rollouts of {len(profiles)} tasks" + (f" (inputs: {inputs_path})" if inputs_path else ""))
    for note in notes:
        print(f"note: {note}")
    for label, (target, _) in outputs.items():
        print(f"{label + ':':<20} {target}")
    return 0
