"""ng_e2e_collect_rollouts: prepare the config's datasets, start its servers, collect one split, stop them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ngym.cli.collect import COLLECT_KEYS, _run
from ngym.cli.common import command_args, entrypoint, load
from ngym.data.prepare import PrepareArgs, conflict_error, format_report, prepare
from ngym.errors import InputError
from ngym.rollout.collect import CollectArgs
from ngym.rollout.output import OutputLock, check_output

SUMMARY = """\
End to end in one command (the reference's ng_e2e_collect_rollouts): ng_prepare_data in
train_preparation mode over the datasets the agents of +config_paths declare (collated into
<dir of +output_jsonl_fpath>/preprocessed_datasets/), then the servers of the config are started,
every row of the chosen +split (train or validation) is collected into +output_jsonl_fpath, and the
servers are stopped (also on Ctrl-C). Datasets are read where their jsonl_fpath points (JSONL,
Parquet, saved Hugging Face datasets); nothing is downloaded.

  ng_e2e_collect_rollouts "+config_paths=[resources_servers/x/configs/x.yaml,responses_api_models/openai_model/configs/openai_model.yaml]" \\
      +output_jsonl_fpath=results/x_train.jsonl +split=train +num_samples_in_parallel=16"""


class E2ECollectArgs(BaseModel):
    """Prepare the datasets, start the servers, collect one split, stop the servers."""

    config_paths: list[str] = Field(description="config files: the environments, their agents and datasets, the model")
    output_jsonl_fpath: str = Field(description="where rollouts are written, one JSON object per line")
    split: Literal["train", "validation"] = Field(description="which prepared split to collect: train or validation")
    num_samples_in_parallel: int | None = Field(None, ge=1, description="max rollouts in flight (default 256)")
    responses_create_params: dict[str, Any] = Field(
        default_factory=dict, description="overrides merged into every row's responses_create_params"
    )
    overwrite: bool = Field(False, description="replace a non-empty output")


@entrypoint("ng_e2e_collect_rollouts", SUMMARY, E2ECollectArgs)
def main(argv: list[str]) -> int:
    cfg, pc = load(argv, command="ng_e2e_collect_rollouts", model=E2ECollectArgs, known=COLLECT_KEYS)
    args = command_args(cfg, E2ECollectArgs, "ng_e2e_collect_rollouts")
    output = Path(args.output_jsonl_fpath)
    prepared_dir = output.parent / "preprocessed_datasets"
    report = prepare(
        PrepareArgs(config_paths=args.config_paths, output_dirpath=str(prepared_dir), mode="train_preparation"), cfg, pc.sources
    )
    print(format_report(report), file=sys.stderr)
    if report.conflicts:
        raise conflict_error(report)
    split_file = prepared_dir / f"{args.split}.jsonl"
    if args.split not in report.outputs or not split_file.is_file():
        found = ", ".join(sorted(report.outputs)) or "none"
        raise InputError(
            f"no {args.split} dataset in the agents of +config_paths (prepared splits: {found}); add a dataset of type "
            f"{args.split} to an agent's datasets, or pass +split=<one of them>"
        )
    collect_args = CollectArgs(
        input_jsonl_fpath=str(split_file),
        output_jsonl_fpath=str(output),
        num_samples_in_parallel=args.num_samples_in_parallel,
        responses_create_params=args.responses_create_params,
        overwrite=args.overwrite,
    )
    with OutputLock(output):
        check_output(split_file, output, resume=False, overwrite=args.overwrite)
        return _run(argv, cfg, pc, collect_args)
