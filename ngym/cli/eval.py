"""ng_eval: held-out evaluation of a policy, per environment, with confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.cli.reward_profile import read_jsonl
from ngym.config.paths import resolve_path
from ngym.errors import ArgumentError
from ngym.rollout.collect import sibling
from ngym.rollout.evaluation import EvalReport, compare, evaluate, format_comparison, format_report

SUMMARY = """\
Evaluate a policy per environment: mean reward over tasks with its 95% confidence interval (Student's
t over task means), pass@1 and pass@k, output tokens, and failed rollouts by kind (excluded, never
scored 0). Writes <output stem>_eval.json.

Collect k samples of every task of a (validation) file, then evaluate — every ng_collect_rollouts
argument works, the servers may be running (ng_run) or started for the run (+config_paths):
  ng_eval +input_jsonl_fpath=data/validation.jsonl +output_jsonl_fpath=results/eval.jsonl +num_repeats=4
Evaluate rollouts already collected:
  ng_eval +rollouts_jsonl_fpath=results/eval.jsonl
Compare with an earlier evaluation (paired by task content; after - before):
  ng_eval +rollouts_jsonl_fpath=results/after.jsonl +compare_to=results/before_eval.json"""


class EvalArgs(BaseModel):
    """Held-out evaluation (the collection arguments of ng_collect_rollouts also apply)."""

    rollouts_jsonl_fpath: str | None = Field(None, description="evaluate this rollouts file instead of collecting")
    input_jsonl_fpath: str | None = Field(None, description="tasks to collect and evaluate (a validation split)")
    output_jsonl_fpath: str | None = Field(None, description="where the collected rollouts go")
    compare_to: str | None = Field(None, description="an earlier <stem>_eval.json (or rollouts file) to compare with")
    pass_threshold: float = Field(1.0, description="a rollout passes when its reward is >= this")


EVAL_ONLY = ("rollouts_jsonl_fpath", "compare_to", "pass_threshold")


def _failures(rollouts_path: Path) -> list[dict[str, Any]]:
    path = sibling(rollouts_path, "_failures.jsonl")
    return read_jsonl(path, "failures file") if path.is_file() else []


def _load_report(path: Path, pass_threshold: float) -> EvalReport:
    if path.suffix == ".json":
        return EvalReport.model_validate_json(path.read_bytes())
    return evaluate(read_jsonl(path, "rollouts file"), _failures(path), pass_threshold=pass_threshold)


@entrypoint("ng_eval", SUMMARY, EvalArgs)
def main(argv: list[str]) -> int:
    from ngym.cli.collect import COLLECT_KEYS  # every ng_collect_rollouts argument applies
    from ngym.rollout.collect import CollectArgs

    cfg, _ = load(argv, command="ng_eval", model=EvalArgs, known=COLLECT_KEYS | set(CollectArgs.model_fields))
    args = command_args(cfg, EvalArgs, "ng_eval")
    if args.rollouts_jsonl_fpath is None:
        if args.input_jsonl_fpath is None or args.output_jsonl_fpath is None:
            raise ArgumentError(
                "ng_eval needs either +rollouts_jsonl_fpath=<collected rollouts> or both "
                "+input_jsonl_fpath=<tasks> and +output_jsonl_fpath=<rollouts to write>. See `ng_eval +help=true`."
            )
        from ngym.cli import collect

        collect_argv = [a for a in argv if a.lstrip("+").split("=", 1)[0] not in EVAL_ONLY]
        code = collect.main.__wrapped__(collect_argv)  # type: ignore[attr-defined]
        if code not in (0, 1, None):  # 1: some rollouts failed; they are counted below, not scored
            return int(code)
        rollouts_path = resolve_path(args.output_jsonl_fpath)
    else:
        rollouts_path = resolve_path(args.rollouts_jsonl_fpath)
    report = evaluate(read_jsonl(rollouts_path, "rollouts file"), _failures(rollouts_path), pass_threshold=args.pass_threshold)
    out = sibling(rollouts_path, "_eval.json")
    out.write_text(report.model_dump_json(indent=2) + "\n")
    print("\n" + format_report(report))
    if args.compare_to is not None:
        before = _load_report(resolve_path(args.compare_to), args.pass_threshold)
        print("\nafter - before (paired by task):\n" + format_comparison(compare(before, report)))
    print(f"\nEvaluation: {out}")
    return 0

