"""One shard of a sharded ``ng_collect_rollouts`` (see :mod:`ngym.rollout.shards`).

:func:`run_shard` runs a shard in the calling process from a :class:`~ngym.rollout.shards.ShardSpec`.
Two runners call it: ``python -m ngym.cli.collect_shard`` reads the spec (JSON) on stdin (how the
driver runs its shards as local processes; the spec travels on stdin, never in a file: a one-shot
deployment's config may hold secrets), and :func:`run_ray` runs each shard as a Ray task
(``ray: true`` or ``ray_head_node_address``), on whichever node of the cluster has a free CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ngym.cli.common import ignore_signals
from ngym.config.deployment import build_deployment, head_server_config
from ngym.errors import DeploymentError, NgymError
from ngym.launch.launcher import Launcher
from ngym.rollout.collect import RAMP_STEP, collect, iter_materialized
from ngym.rollout.output import OutputLock
from ngym.rollout.shards import DRIVER_ENV, ShardResult, ShardRun, ShardSpec, result_path, watch
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
            ramp_step=max(1, RAMP_STEP // spec.count),  # the shards together ramp up as one collector does
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


# ---- shards as Ray tasks ------------------------------------------------------------------------------

#: top-level keys that put a run on Ray; a shard's own config leaves them out (a shard hosts its servers)
RAY_KEYS = ("ray", "ray_head_node_address")


def run_shard_json(spec_json: str) -> str:
    """The body of a shard's Ray task: :func:`run_shard` on the spec (JSON), its result as JSON."""
    spec = ShardSpec.model_validate_json(spec_json)
    if spec.cwd:
        os.chdir(spec.cwd)
    tune_gc()
    return run_shard(spec).model_dump_json()


@dataclass
class RayShard(ShardRun):
    """A shard running as a Ray task (its files on a file system the driver reads too)."""

    ref: Any = None
    ray: Any = None
    error: str = ""
    #: its outcome, read once while the cluster is up (the driver asks again after it is shut down)
    settled: bool | None = None

    def running(self) -> bool:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        return not ready

    def interrupt(self) -> None:
        self.ray.cancel(self.ref)  # a KeyboardInterrupt in the task: it stops, its lines are kept

    def kill(self) -> None:
        self.ray.cancel(self.ref, force=True)

    def finished(self) -> bool:
        if self.settled is None:
            try:
                self.ray.get(self.ref, timeout=10)
            except Exception as e:  # the task's failure, as Ray reports it (a crashed worker, a lost node)
                self.error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
                self.settled = False
            else:
                self.settled = self.result() is not None
        return self.settled

    def how_it_ended(self) -> str:
        return f"(Ray task) failed: {self.error or 'no result'}"


def run_ray(
    specs: Sequence[ShardSpec], *, address: str | None, total: int | None, initial: int, progress: bool,
    grace_s: float = 60.0,
) -> list[ShardRun]:
    """Run each shard as a Ray task (one CPU each) on the cluster at ``address`` (``auto``: the one
    running on this machine), or on a local cluster started here and stopped at the end; see
    :func:`ngym.rollout.shards.watch` for progress and Ctrl-C. Paths in the specs must be readable
    and writable from every node (a shared file system)."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError:
        raise DeploymentError(
            "ray: true (or ray_head_node_address) runs the shards as Ray tasks, but Ray is not installed. "
            "Install it (pip install ray; the same version on every node), or leave the key out to run the shards "
            "as local processes."
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        # "local": a cluster of this machine, started here (without it Ray joins whichever cluster this machine runs)
        ray.init(address=address or "local", include_dashboard=False, logging_level="warning", log_to_driver=True)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_shard_json)
        runs: list[ShardRun] = [RayShard(spec, ref=task.remote(spec.model_dump_json()), ray=ray) for spec in specs]
        watch(runs, total=total, initial=initial, progress=progress, grace_s=grace_s)
        for r in runs:
            r.finished()  # read each task's outcome while the cluster is up
        return runs
    finally:
        if started_here:
            ray.shutdown()


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


def shard_main(spec: ShardSpec) -> int:
    """Run ``spec`` as this process's whole job (a shard process): signals as a command's, ends with
    the driver; the exit code (0 done, 1 stopped early, 2 did not run, 130 interrupted)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _end_with_driver()
    tune_gc()
    try:
        result = run_shard(spec)
    except KeyboardInterrupt:
        return 130
    except NgymError as e:
        print(f"error: shard {spec.index}: {e}", file=sys.stderr)
        return 2
    return 2 if result.error else 1 if result.aborted else 0


def main() -> None:
    sys.exit(shard_main(ShardSpec.model_validate_json(sys.stdin.buffer.read())))


if __name__ == "__main__":
    main()
