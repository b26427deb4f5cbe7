"""ng_prepare_data: validate every agent's datasets, write their metrics, collate them by type."""

from __future__ import annotations

import sys

from ngym.cli.common import DEPLOYMENT_KEYS, command_args, entrypoint, load
from ngym.data.prepare import POLICY_PLACEHOLDERS, PrepareArgs, conflict_error, format_report, prepare

SUMMARY = """\
Check every row of the datasets the agents of +config_paths declare, write each dataset's metrics
next to it (<stem>_metrics.json; a committed file that disagrees is an error), and collate the rows
of each type into +output_dirpath/<type>.jsonl with agent_ref stamped and num_repeats applied. No
model config or credentials are needed.

  ng_prepare_data "+config_paths=[resources_servers/x/configs/x.yaml]" +output_dirpath=prepared \
      +mode=train_preparation
  ng_prepare_data "+config_paths=[...]" +output_dirpath=out +mode=example_validation
Balanced mixing (every batch of 64 rows holds each environment in proportion to its weight):
  ng_prepare_data "+config_paths=[a.yaml,b.yaml]" +output_dirpath=out +mode=train_preparation \\
      +mix=balanced +batch_size=64 "+mix_weights={a_simple_agent:1,b_simple_agent:3}" +seed=1"""


@entrypoint("ng_prepare_data", SUMMARY, PrepareArgs)
def main(argv: list[str]) -> int:
    cfg, pc = load(
        argv, command="ng_prepare_data", model=PrepareArgs, known=DEPLOYMENT_KEYS,
        initial_global_config_dict=dict(POLICY_PLACEHOLDERS),
    )
    args = command_args(cfg, PrepareArgs, "ng_prepare_data")
    report = prepare(args, cfg, pc.sources)
    print(format_report(report))
    if report.skipped:
        print(f"warning: {len(report.skipped)} invalid row(s) were left out (+skip_invalid_rows=true).",
              file=sys.stderr)
    if report.conflicts:
        raise conflict_error(report)
    return 0
