"""One shard of a sharded ``ng_collect_rollouts`` (see :mod:`ngym.rollout.shards`).

:func:`run_shard` runs a shard in the calling process: the unit a remote runner (a Ray task on
another machine) calls with a :class:`~ngym.rollout.shards.ShardSpec`. ``python -m
ngym.cli.collect_shard`` reads the spec (JSON) on stdin and runs it: how the driver runs its
shards as local processes. The spec travels on stdin, never in a file: a one-shot deployment's
config may hold secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ngym.cli.common import ignore_signals
from ngym.config.deployment import build_deployment, head_server_config
from ngym.errors import NgymError
from ngym.launch.launcher import Launcher
from ngym.rollout.collect import collect, iter_materialized
from ngym.rollout.output import OutputLock
from ngym.rollout.shards import DRIVER_ENV, ShardResult, ShardSpec, result_path
from ngym.rollout.task_fields import check_task_fields
from ngym.server.client import ServerClient
from ngym.server.host import HostedServers
from ngym.server.process import tune_gc


async def _collect(spec: ShardSpec, client: ServerClient) -> ShardResult:
    try:
        if spec.check_inputs:
            await check_task_fields(client, Path(spec.input_jsonl_fpath), iter_materialized(Path(spec.check_inputs)))
        report = await collect(
            client,
            iter_materialized(Path(spec.inputs)),
            Path(spec.output),
            concurrency=spec.concurrency,
            max_attempts=spec.max_attempts,
            deadline_s=spec.deadline_s,
            max_consecutive_failures=spec.max_consecutive_failures,
            resume=False,
            progress=False,
        )
    finally:
        await client.aclose()
    return ShardResult(
        index=spec.index, written=report.written, failed=len(report.failures), retried=report.retried,
        seconds=report.seconds, ended_at=time.time(), aborted=report.aborted,
    )


async def _hosting(spec: ShardSpec, launcher: Launcher, t0: float) -> ShardResult:
    deployment = launcher.deployment
    async with contextlib.AsyncExitStack() as stack:
        if deployment.colocated:
            await stack.enter_async_context(HostedServers(deployment.config, deployment.colocated))
        print(f"shard {spec.index}: {len(deployment.servers)} servers ready in {time.monotonic() - t0:.2f} s",
              file=sys.stderr, flush=True)
        return await _collect(spec, ServerClient.from_config(deployment.config))
    raise AssertionError("unreachable")


def _one_shot(spec: ShardSpec) -> ShardResult:
    assert spec.config_yaml is not None
    cfg = OmegaConf.create(spec.config_yaml)
    assert isinstance(cfg, DictConfig)
    cfg.head_server = {**(cfg.get("head_server") or {}), "port": 0}
    if spec.port_range is not None:
        cfg.port_range_low, cfg.port_range_high = spec.port_range
    deployment = build_deployment(cfg)
    launcher = Launcher(deployment, out=sys.stderr, startup_timeout_s=spec.startup_timeout_s, host_colocated_here=True)
    t0 = time.monotonic()
    launcher.start()
    try:
        return asyncio.run(_hosting(spec, launcher, t0))
    finally:
        ignore_signals()
        launcher.stop()


def run_shard(spec: ShardSpec) -> ShardResult:
    """Run one shard here: collect its tasks into its output (locked for the run), against the
    head server's deployment or (``config_yaml``) servers it starts, hosts and stops itself.
    Writes and returns its :class:`ShardResult`; an error before anything was sent is the
    result's ``error``."""
    output = Path(spec.output)
    with OutputLock(output):
        try:
            if spec.config_yaml is not None:
                result = _one_shot(spec)
            else:
                if spec.head_server is None:
                    raise NgymError(f"shard {spec.index}: the spec names neither a head server nor a config")
                cfg = OmegaConf.create({"head_server": spec.head_server})
                client = asyncio.run(ServerClient.from_head_server(head_server_config(cfg)))
                result = asyncio.run(_collect(spec, client))
        except NgymError as e:
            result = ShardResult(index=spec.index, error=str(e), error_type=type(e).__name__)
        result_path(output).write_text(result.model_dump_json())
    return result


def _end_with_driver() -> None:
    """SIGTERM when the driver dies, even by ``kill -9`` (Linux ``PR_SET_PDEATHSIG``)."""
    driver = os.environ.get(DRIVER_ENV)
    if not driver:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(driver):
        sys.exit("error: the ng_collect_rollouts that started this shard is gone")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _end_with_driver()
    tune_gc()
    spec = ShardSpec.model_validate_json(sys.stdin.buffer.read())
    try:
        result = run_shard(spec)
    except KeyboardInterrupt:
        sys.exit(130)
    except NgymError as e:
        print(f"error: shard {spec.index}: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(2 if result.error else 1 if result.aborted else 0)


if __name__ == "__main__":
    main()
