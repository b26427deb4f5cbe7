"""ng_collect_rollouts: run every row of a JSONL file through its agent and write the rollouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from ngym.cli.common import DEPLOYMENT_KEYS, command_args, entrypoint, ignore_signals, load
from ngym.rollout.collect import CollectArgs, CollectionReport, collect, iter_materialized, materialize, sibling, task_keys
from ngym.data.sources import parse_columns
from ngym.rollout.output import OutputLock, check_output
from ngym.rollout.task_fields import check_task_fields
from ngym.config.deployment import Deployment, build_deployment
from ngym.config.loader import ParserConfig
from ngym.config.paths import resolve_path
from ngym.config.deployment import head_server_config
from ngym.launch.launcher import Launcher
from ngym.rollout.metrics import aggregate_metrics, agent_metrics, format_aggregate_table, format_table, task_profiles
from ngym.server.client import ServerClient
from ngym.server.process import tune_gc
from ngym.server.host import HostedServers

SUMMARY = """\
Send each row of +input_jsonl_fpath to the agent its agent_ref names (POST /run) and append each
verified rollout to +output_jsonl_fpath as it completes. Rows are all checked first; nothing is
sent if one is bad. Failed rollouts go to <output>_failures.jsonl with their reason, never into
the rollouts. Per-agent metrics are printed and written to <output>_agent_metrics.json.
A non-empty output is kept: +resume=true runs only what is missing (rollouts of input rows that
changed since are set aside and run again), +overwrite=true replaces it. One run writes an output
at a time (<output>.lock).

Against running servers (ng_run in another terminal):
  ng_collect_rollouts +input_jsonl_fpath=in.jsonl +output_jsonl_fpath=out.jsonl
One-shot (start the servers, collect, stop them):
  ng_collect_rollouts "+config_paths=[...]" +input_jsonl_fpath=in.jsonl +output_jsonl_fpath=out.jsonl
A Parquet file or a saved Hugging Face dataset, its columns mapped to rows:
  ng_collect_rollouts +input_jsonl_fpath=tasks.parquet "+input_columns={prompt: question}" +output_jsonl_fpath=out.jsonl"""


def _one_shot(argv: list[str]) -> bool:
    return any(a.lstrip("+").startswith("config_paths=") for a in argv)


def _resume(args: CollectArgs) -> bool:
    return args.resume or args.resume_from_cache


async def _collect(args: CollectArgs, client: ServerClient, show_progress: bool) -> int:
    try:
        return await _collect_with(args, client, show_progress)
    finally:
        await client.aclose()


async def _collect_with(args: CollectArgs, client: ServerClient, show_progress: bool) -> int:
    agents = [name for name, url in client.urls.items() if _is_agent(client, name)]
    input_path = resolve_path(args.input_jsonl_fpath)
    output = Path(args.output_jsonl_fpath)
    materialized = sibling(output, "_materialized_inputs.jsonl")
    total = materialize(
        input_path,
        materialized,
        agent_name=args.agent_name,
        agents=agents,
        limit=args.limit,
        num_repeats=args.num_repeats,
        add_seed=args.num_repeats_add_seed,
        overrides=args.responses_create_params,
        columns=parse_columns(args.input_columns, "+input_columns") if args.input_columns is not None else None,
    )
    # rows against the task fields their environments declare (GET /spec), before anything is sent
    await check_task_fields(client, input_path, iter_materialized(materialized))
    resuming = _resume(args) and output.is_file() and output.stat().st_size > 0
    report = await collect(
        client,
        iter_materialized(materialized),
        output,
        total=total,
        concurrency=args.num_samples_in_parallel or 256,
        max_attempts=args.max_attempts,
        deadline_s=args.rollout_timeout_s,
        max_consecutive_failures=args.max_consecutive_failures,
        resume=_resume(args),
        progress=show_progress,
        current=task_keys(materialized) if resuming else None,
    )
    if report.resume_note:
        print(f"note: {report.resume_note}", file=sys.stderr, flush=True)
    try:
        paths = _write_metrics(report, output, materialized)
    except OSError as e:
        print(f"warning: the metrics files could not be written ({e.strerror}); the rollouts are complete in {output}. "
              f"`ng_reward_profile +rollouts_jsonl_fpath={output}` writes them later.", file=sys.stderr)
        paths = None
    _print_summary(report, output, materialized, paths)
    if report.aborted:
        print(
            f"error: collection {report.aborted}\nCompleted rollouts are kept. Fix the cause, then re-run the same "
            f"command with +resume=true to run only what is missing.",
            file=sys.stderr,
        )
        return 1
    if report.failures:
        print(
            f"{len(report.failures)} rollout(s) failed; see the failures file. Re-run with +resume=true to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0


def _write_metrics(report: CollectionReport, output: Path, materialized: Path) -> tuple[Path, Path, Path]:
    metrics = agent_metrics(report.results)
    metrics_path = sibling(output, "_agent_metrics.json")
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    profile_path = sibling(output, "_reward_profiling.jsonl")
    profile_path.write_text("".join(json.dumps(p) + "\n" for p in task_profiles(report.results)))
    aggregate_path = sibling(output, "_aggregate_metrics.json")
    aggregate = aggregate_metrics(report.results, (task.row for task in iter_materialized(materialized)))
    aggregate_path.write_text(json.dumps(aggregate, indent=2) + "\n")
    failures: dict[str, int] = {}
    for f in report.failures:
        failures[f["agent_ref"]["name"]] = failures.get(f["agent_ref"]["name"], 0) + 1
    print(format_table(metrics, failures))
    if "pass@k" in aggregate["overall"]:
        print("\n" + format_aggregate_table(aggregate))
    return metrics_path, profile_path, aggregate_path


def _print_summary(
    report: CollectionReport, output: Path, materialized: Path, paths: tuple[Path, Path, Path] | None
) -> None:
    print(
        f"\n{report.written} rollouts written in {report.seconds:.2f} s"
        + (f" ({report.skipped} already done)" if report.skipped else "")
        + (f", {len(report.failures)} failed" if report.failures else "")
    )
    print(f"Materialized inputs: {materialized}\nRollouts:            {output}")
    if report.failures:
        print(f"Failures:            {sibling(output, '_failures.jsonl')}")
    if paths is not None:
        print(f"Agent metrics:       {paths[0]}\nReward profiling:    {paths[1]}")
        print(f"Aggregate metrics:   {paths[2]}")


async def _collect_hosting(args: CollectArgs, deployment: Deployment, show_progress: bool, t0: float) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if deployment.colocated:
            await stack.enter_async_context(HostedServers(deployment.config, deployment.colocated))
        print(f"{len(deployment.servers)} servers ready in {time.monotonic() - t0:.2f} s", file=sys.stderr, flush=True)
        return await _collect(args, ServerClient.from_config(deployment.config), show_progress)
    raise AssertionError("unreachable")


def _is_agent(client: ServerClient, name: str) -> bool:
    cfg = client.config
    return cfg is not None and name in cfg and "responses_api_agents" in cfg[name]


#: top-level keys ng_collect_rollouts reads besides its arguments
COLLECT_KEYS = frozenset({"no_progress", "startup_timeout_s"}) | DEPLOYMENT_KEYS


@entrypoint("ng_collect_rollouts", SUMMARY, CollectArgs)
def main(argv: list[str]) -> int:
    cfg, pc = load(argv, command="ng_collect_rollouts", model=CollectArgs, known=COLLECT_KEYS)
    tune_gc()
    args = command_args(cfg, CollectArgs, "ng_collect_rollouts")
    output = Path(args.output_jsonl_fpath)
    # the output is owned (locked) and checked before any server starts or any file is written
    with OutputLock(output):
        check_output(resolve_path(args.input_jsonl_fpath), output, resume=_resume(args), overwrite=args.overwrite)
        return _run(argv, cfg, pc, args)


def _run(argv: list[str], cfg: DictConfig, pc: ParserConfig, args: CollectArgs) -> int:
    show_progress = not bool(cfg.get("no_progress", False))
    if not _one_shot(argv):
        head = head_server_config(cfg)
        client = asyncio.run(ServerClient.from_head_server(head))
        return asyncio.run(_collect(args, client, show_progress))
    if "port" not in (cfg.get("head_server") or {}):
        cfg.head_server = {**(cfg.get("head_server") or {}), "port": 0}  # private deployment: any free port
    deployment = build_deployment(cfg, pc.sources)
    # one-shot with colocate: the co-located servers live in this process, next to the collector —
    # rollouts reach their agents without a socket (each server still listens on its port)
    launcher = Launcher(
        deployment, out=sys.stderr, startup_timeout_s=float(cfg.get("startup_timeout_s", 180)), host_colocated_here=True
    )
    t0 = time.monotonic()
    launcher.start()
    try:
        return asyncio.run(_collect_hosting(args, deployment, show_progress, t0))
    finally:
        ignore_signals()
        launcher.stop()
