"""ng_collect_rollouts: run every row of a JSONL file through its agent and write the rollouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ngym.cli.collect_shard import RAY_KEYS, run_ray, shard_main
from ngym.cli.common import DEPLOYMENT_KEYS, command_args, entrypoint, ignore_signals, load
from ngym.data.sources import parse_columns
from ngym.errors import error_class
from ngym.rollout.collect import (
    CollectArgs,
    CollectionReport,
    collect,
    iter_materialized,
    materialize,
    prepare_output,
    sibling,
    task_keys,
)
from ngym.rollout.output import OutputLock, check_output
from ngym.rollout.shards import (
    ShardResult,
    ShardRun,
    ShardSpec,
    fold_shards,
    port_ranges,
    run_local,
    shard_concurrency,
    shard_output,
    split,
)
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
Sharded (K collector processes, one output; one-shot: each hosts its own servers, +colocate=true):
  ng_collect_rollouts "+config_paths=[...]" +colocate=true +num_shards=2 +input_jsonl_fpath=... ...
A Parquet file or a saved Hugging Face dataset, its columns mapped to rows:
  ng_collect_rollouts +input_jsonl_fpath=tasks.parquet "+input_columns={prompt: question}" +output_jsonl_fpath=out.jsonl"""


def _columns(args: CollectArgs) -> Any:
    """The +input_columns mapping (Parquet / saved datasets), checked; None for JSONL rows."""
    return parse_columns(args.input_columns, "+input_columns") if args.input_columns is not None else None


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
        columns=_columns(args),
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
    return _finish(report, output, materialized)


def _finish(report: CollectionReport, output: Path, materialized: Path) -> int:
    """Metrics files, the summary, and the exit code of a finished collection."""
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
        + (f"; {report.retried} failed attempt(s) were retried (recorded in the failures file)" if report.retried else "")
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
COLLECT_KEYS = frozenset({"no_progress", "startup_timeout_s", *RAY_KEYS}) | DEPLOYMENT_KEYS


@entrypoint("ng_collect_rollouts", SUMMARY, CollectArgs)
def main(argv: list[str]) -> int:
    cfg, pc = load(argv, command="ng_collect_rollouts", model=CollectArgs, known=COLLECT_KEYS)
    tune_gc()
    args = command_args(cfg, CollectArgs, "ng_collect_rollouts")
    output = Path(args.output_jsonl_fpath)
    # the output is owned (locked) and checked before any server starts or any file is written
    with OutputLock(output):
        _fold_leftovers(output)
        check_output(resolve_path(args.input_jsonl_fpath), output, resume=_resume(args), overwrite=args.overwrite)
        if args.num_shards > 1:
            return _run_sharded(argv, cfg, pc, args)
        return _run(argv, cfg, pc, args)


def _fold_leftovers(output: Path) -> None:
    """Rollouts a sharded run left in its shards' files (its driver was killed) join the output first."""
    folded = fold_shards(output, keep_results=False)
    if folded.shards:
        print(
            f"note: {folded.written} rollout(s) and {len(folded.failures)} failure(s) left by {folded.shards} shard(s) of "
            f"an interrupted sharded run were moved into {output}",
            file=sys.stderr, flush=True,
        )


def _run_sharded(argv: list[str], cfg: DictConfig, pc: ParserConfig, args: CollectArgs) -> int:
    """The driver of ``+num_shards=K`` (see :mod:`ngym.rollout.shards`): materialize, prepare the
    output, deal the tasks, run K shard processes, fold their outputs into the output."""
    show_progress = not bool(cfg.get("no_progress", False))
    one_shot = _one_shot(argv)
    input_path = resolve_path(args.input_jsonl_fpath)
    output = Path(args.output_jsonl_fpath)
    materialized = sibling(output, "_materialized_inputs.jsonl")
    count = args.num_shards
    base: dict[str, Any] = {
        "count": count,
        "cwd": str(Path.cwd()),
        "input_jsonl_fpath": str(input_path.resolve()),
        "concurrency": shard_concurrency(args.num_samples_in_parallel or 256, count),
        "max_attempts": args.max_attempts,
        "deadline_s": args.rollout_timeout_s,
        "max_consecutive_failures": args.max_consecutive_failures,
        "startup_timeout_s": float(cfg.get("startup_timeout_s", 180)),
    }
    client: ServerClient | None = None
    if one_shot:
        deployment = build_deployment(cfg.copy(), pc.sources, assign_ports=False)  # checked here, started by each shard
        agents = [s.name for s in deployment.agents()]
        ranges = port_ranges(int(cfg.get("port_range_low", 10001)), int(cfg.get("port_range_high", 20000)), count)
        shard_cfg = cfg.copy()
        for key in RAY_KEYS:  # each shard hosts its own servers; Ray runs the shards, not their servers
            shard_cfg.pop(key, None)
        base["config_yaml"] = OmegaConf.to_yaml(shard_cfg)
        base["check_inputs"] = str(materialized.resolve())
    else:
        head = head_server_config(cfg)
        client = asyncio.run(ServerClient.from_head_server(head))
        agents = [name for name in client.urls if _is_agent(client, name)]
        base["head_server"] = {"host": head.host, "port": head.port}
    total = materialize(
        input_path, materialized, agent_name=args.agent_name, agents=agents, limit=args.limit,
        num_repeats=args.num_repeats, add_seed=args.num_repeats_add_seed, overrides=args.responses_create_params,
        columns=_columns(args),
    )
    if client is not None:
        asyncio.run(_check_fields_and_close(client, input_path, materialized))
    resuming = _resume(args) and output.is_file() and output.stat().st_size > 0
    done, report = prepare_output(output, resume=_resume(args), current=task_keys(materialized) if resuming else None)
    if report.resume_note:
        print(f"note: {report.resume_note}", file=sys.stderr, flush=True)
    specs = [
        ShardSpec(index=i, inputs=str(path.resolve()), output=str(shard_output(output, i).resolve()),
                  port_range=ranges[i] if one_shot else None, **base)
        for i, (path, n) in enumerate(split(materialized, output, done, count)) if n
    ]
    print(f"{total - len(done)} rollout(s) to run in {len(specs)} shard(s)"
          + (f" ({len(done)} already done)" if done else ""), file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        if _on_ray(cfg):
            address = cfg.get("ray_head_node_address")
            runs = run_ray(specs, address=str(address) if address else None, total=total, initial=len(done),
                           progress=show_progress)
        else:
            runs = run_local(specs, total=total, initial=len(done), progress=show_progress, target=shard_main)
    except KeyboardInterrupt:
        folded = fold_shards(output, keep_results=False)
        print(f"\ninterrupted: every shard stopped; {folded.written} rollout(s) completed by this run are kept in {output}. "
              f"Re-run with +resume=true to run only what is missing.", file=sys.stderr, flush=True)
        raise
    wall = time.monotonic() - t0
    results = [r.result() for r in runs]  # read before the fold removes the shards' files
    # the collection's span, from the first shard's start to the last one's end (their servers'
    # start-up left out, as a one-process run leaves it out); the driver's wall time otherwise
    spans = [(res.ended_at - res.seconds, res.ended_at) for res in results if res is not None and res.ended_at]
    report.seconds = max(e for _, e in spans) - min(s for s, _ in spans) if spans else wall
    problems = _shard_problems(runs, results)
    folded = fold_shards(output)
    report.written = folded.written
    report.results.extend(folded.results)
    report.failures = folded.failures
    report.retried = folded.retried
    errors = sorted({res.error for res in results if res is not None and res.error})
    if errors and len(errors) == 1 and not report.written and all(res is not None and res.error for res in results):
        # e.g. rows that do not fit an environment: every shard says the same and nothing ran
        raise error_class(next(res.error_type for res in results if res is not None))(errors[0])
    if problems:
        report.aborted = "; ".join(problems)
    return _finish(report, output, materialized)


async def _check_fields_and_close(client: ServerClient, input_path: Path, materialized: Path) -> None:
    try:
        await check_task_fields(client, input_path, iter_materialized(materialized))
    finally:
        await client.aclose()


def _on_ray(cfg: DictConfig) -> bool:
    """``ray: true``, or an address without ``ray: false``: the shards run as Ray tasks."""
    ray = cfg.get("ray")
    return bool(ray) if ray is not None else bool(cfg.get("ray_head_node_address"))


def _shard_problems(runs: list[ShardRun], results: list[ShardResult | None]) -> list[str]:
    """Why shards did not finish their share, one sentence each."""
    problems = []
    for r, result in zip(runs, results, strict=True):
        if result is not None and result.error:
            problems.append(f"shard {r.spec.index} did not run: {result.error}")
        elif result is not None and result.aborted:
            problems.append(f"shard {r.spec.index} {result.aborted}")
        elif not r.finished():
            problems.append(
                f"shard {r.spec.index} {r.how_it_ended()} before it finished its share "
                f"({r.written} rollout(s) it completed are kept)"
            )
    return problems


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
