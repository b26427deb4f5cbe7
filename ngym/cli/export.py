"""ng_export: rollouts -> offline training data (chat-format SFT rows, or DPO preference pairs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.config.paths import resolve_path
from ngym.data.export import ExportStats, dpo_pairs, sft_rows
from ngym.data.jsonl import iter_jsonl

SUMMARY = """\
Turn a rollouts file (ng_collect_rollouts output) into offline training data, in the OpenAI chat
format with tool calls and tool outputs kept in the messages.

  +format=sft: one {"messages", "tools", "reward", ...} row per rollout with reward >= +min_reward
  +format=dpo: per task (_ng_task_index), the best and worst rollout as {"prompt", "chosen",
               "rejected", ...}; ties are skipped (collect with +num_repeats=4 or more)

  ng_export +input_jsonl_fpath=results/out.jsonl +output_jsonl_fpath=results/sft.jsonl +format=sft +min_reward=1
  ng_export +input_jsonl_fpath=results/out.jsonl +output_jsonl_fpath=results/dpo.jsonl +format=dpo"""


class ExportArgs(BaseModel):
    input_jsonl_fpath: str = Field(description="rollouts file written by ng_collect_rollouts")
    output_jsonl_fpath: str = Field(description="where the training rows are written")
    format: Literal["sft", "dpo"] = Field("sft", description="sft (chat rows) or dpo (preference pairs)")
    min_reward: float | None = Field(None, description="sft: keep rollouts with reward >= this (default: all)")
    min_margin: float = Field(0.0, ge=0, description="dpo: keep pairs whose reward gap is > this (0 skips ties)")


def _read(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, _, row in iter_jsonl(path, "rollouts file"):
        yield f"{path}:{lineno}", row


@entrypoint("ng_export", SUMMARY, ExportArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_export", model=ExportArgs)
    args = command_args(cfg, ExportArgs, "ng_export")
    source = resolve_path(args.input_jsonl_fpath)
    target = Path(args.output_jsonl_fpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    stats = ExportStats()
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            if args.format == "sft":
                rows: Any = sft_rows(_read(source), args.min_reward, stats)
            else:
                rows = dpo_pairs(_read(source), args.min_margin, stats)
            for row in rows:
                out.write(orjson.dumps(row) + b"\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    what = "SFT rows" if args.format == "sft" else "DPO pairs"
    print(f"{stats.written} {what} from {stats.read} rollouts -> {target}")
    for why, n in stats.skipped.items():
        print(f"  skipped {n}: {why}")
    if stats.written == 0:
        print(f"warning: no {what} written; check +min_reward / the rewards in {source}.", file=sys.stderr)
    return 0
