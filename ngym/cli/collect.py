"""ng_collect_rollouts: run every row of a JSONL file through its agent and write the rollouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from ngym.cli.common import ignore_signals, command_args, entrypoint, load
from ngym.rollout.collect import CollectArgs, collect, iter_materialized, materialize, sibling
from ngym.config.deployment import Deployment, build_deployment
from ngym.config.paths import resolve_path
from ngym.config.schema import HeadServerConfig
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

Against running servers (ng_run in another terminal):
  ng_collect_rollouts +input_jsonl_fpath=in.jsonl +output_jsonl_fpath=out.jsonl
One-shot (start the servers, collect, stop them):
  ng_collect_rollouts "+config_paths=[...]" +input_jsonl_fpath=in.jsonl +output_jsonl_fpath=out.jsonl"""


def _one_shot(argv: list[str]) -> bool:
    return any(a.lstrip("+").startswith("config_paths=") for a in argv)


async def _collect(args: CollectArgs, client: ServerClient, show_progress: bool) -> int:
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
    )
    try:
        report = await collect(
            client,
            iter_materialized(materialized),
            output,
            total=total,
            concurrency=args.num_samples_in_parallel or 256,
            max_attempts=args.max_attempts,
            deadline_s=args.rollout_timeout_s,
            max_consecutive_failures=args.max_consecutive_failures,
            resume=args.resume or args.resume_from_cache,
            progress=show_progress,
        )
    finally:
        await client.aclose()
    metrics = agent_metrics(report.results)
    failures: dict[str, int] = {}
    for f in report.failures:
        failures[f["agent_ref"]["name"]] = failures.get(f["agent_ref"]["name"], 0) + 1
    metrics_path = sibling(output, "_agent_metrics.json")
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    profile_path = sibling(output, "_reward_profiling.jsonl")
    profile_path.write_text("".join(json.dumps(p) + "\n" for p in task_profiles(report.results)))
    aggregate_path = sibling(output, "_aggregate_metrics.json")
    aggregate = aggregate_metrics(report.results, (task.row for task in iter_materialized(materialized)))
    aggregate_path.write_text(json.dumps(aggregate, indent=2) + "\n")
    print(format_table(metrics, failures))
    if "pass@k" in aggregate["overall"]:
        print("\n" + format_aggregate_table(aggregate))
    print(
        f"\n{report.written} rollouts written in {report.seconds:.2f} s"
        + (f" ({report.skipped} already done)" if report.skipped else "")
        + (f", {len(report.failures)} failed" if report.failures else "")
    )
    print(f"Materialized inputs: {materialized}\nRollouts:            {output}")
    if report.failures:
        print(f"Failures:            {sibling(output, '_failures.jsonl')}")
    print(f"Agent metrics:       {metrics_path}\nReward profiling:    {profile_path}")
    print(f"Aggregate metrics:   {aggregate_path}")
    if report.aborted:
        print(
            f"error: collection {report.aborted}\nCompleted rollouts are kept. Fix the server, then re-run the same "
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


@entrypoint("ng_collect_rollouts", SUMMARY, CollectArgs)
def main(argv: list[str]) -> int:
    cfg, pc = load(argv)
    tune_gc()
    args = command_args(cfg, CollectArgs, "ng_collect_rollouts")
    show_progress = not bool(cfg.get("no_progress", False))
    if not _one_shot(argv):
        head = HeadServerConfig.model_validate(cfg.get("head_server") or {})
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
