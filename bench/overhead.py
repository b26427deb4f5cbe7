"""Framework overhead benchmark: a deployment with an instant scripted model, driven with the
seed mix (50% example_single_tool_call: 2 model calls + 1 tool call; 50% example_multi_step:
4 model calls + 3 tool calls) at several concurrencies.

    python bench/overhead.py                      # concurrency 1, 32, 256; median of 3 runs
    python bench/overhead.py --concurrency 16000 --delay-s 1 --rollouts 32000 --runs 1
    python bench/overhead.py --floor              # the bare-HTTP floor (same number of hops)

Prints rollouts/s, p50/p99 latency, CPU seconds per rollout (all deployment processes, and the
driver), peak RSS of the deployment's process tree, and time from ng_run to all servers ready;
appends one JSON line per configuration to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from procfs import cpu_seconds, rss_bytes, tree  # bench/procfs.py, beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ngym.rollout.collect import Task, run_tasks  # noqa: E402
from ngym.server.process import tune_gc  # noqa: E402
from ngym.server.client import ServerClient, fetch_global_config  # noqa: E402
from ngym.config.schema import HeadServerConfig  # noqa: E402

CONFIGS = [
    "responses_api_models/scripted_model/configs/scripted_model.yaml",
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    "resources_servers/example_multi_step/configs/example_multi_step.yaml",
]


def throughput(n: int, wall: float, latencies: list[float]) -> dict[str, float]:
    """rollouts/s, p50 and p99 (ms) of one timed run."""
    lat = sorted(latencies)
    return {
        "rollouts_per_s": n / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"{platform.node()}: {os.cpu_count()} cpus, {model}"


def rows() -> tuple[dict, dict]:
    single = json.loads((REPO / "resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[0])
    multi = json.loads((REPO / "resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()[0])
    single["agent_ref"] = {"name": "example_single_tool_call_simple_agent"}
    multi["agent_ref"] = {"name": "example_multi_step_simple_agent"}
    return single, multi


def tasks(n: int) -> list[Task]:
    single, multi = rows()
    out = []
    for i in range(n):
        row = dict(single if i % 2 == 0 else multi)
        row["_ng_task_index"], row["_ng_rollout_index"] = i, 0
        out.append(Task(row, row["agent_ref"]["name"], i + 1))
    return out


class Deployment:
    def __init__(self, head_port: int, delay_s: float, extra: list[str]) -> None:
        args = [f"+config_paths=[{','.join(CONFIGS)}]", f"+head_server.port={head_port}"]
        if delay_s:
            args.append(f"++policy_model.responses_api_models.scripted_model.delay_s={delay_s}")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ng_run"), *args, *extra],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.ready_s = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "servers ready" in line:
                self.ready_s = time.monotonic() - self.t0
                break
        if self.ready_s is None:
            raise RuntimeError("ng_run did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        self.head = HeadServerConfig(port=head_port)
        self.peak_rss = 0
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, rss_bytes(tree(self.proc.pid)))
            except OSError:  # out of file descriptors for a moment (16k sockets): next time
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        self._sampling = False
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


async def drive(
    head: HeadServerConfig | ServerClient, n: int, concurrency: int, warmup: int = 0,
    on_start: Callable[[], None] = lambda: None,
) -> tuple[float, list[float], int]:
    """``warmup`` rollouts at ``concurrency`` (imports, pools, caches and connections warm), then
    ``on_start()``, then ``n`` timed ones through the same client."""
    client = head if isinstance(head, ServerClient) else ServerClient.from_config(await fetch_global_config(head))
    latencies: list[float] = []
    failures = 0
    original = client.post

    async def timed_post(server_name, url_path, json=None, cookies=None, timeout=None):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        answer = await original(server_name, url_path, json, cookies, timeout)
        latencies.append(time.perf_counter() - t)
        return answer

    client.post = timed_post  # type: ignore[method-assign]
    async for _ in run_tasks(client, tasks(warmup), concurrency=concurrency, max_attempts=1):
        pass
    latencies.clear()
    on_start()
    t0 = time.perf_counter()
    async for outcome in run_tasks(client, tasks(n), concurrency=concurrency, max_attempts=1):
        if outcome.result is None:
            failures += 1
            if failures <= 5:
                print("failure:", outcome.failure, file=sys.stderr)
    wall = time.perf_counter() - t0
    await client.aclose()
    return wall, latencies, failures


def one_run_in_process(args: argparse.Namespace, concurrency: int, n: int) -> dict:
    """Servers and driver in this one process, as a one-shot ``ng_collect_rollouts +colocate=true``
    runs them: rollouts reach their agents without a socket; every server still listens on its port."""
    from ngym.config import ParserConfig, build_deployment, load_config
    from ngym.launch.launcher import Launcher
    from ngym.server.host import HostedServers

    t0 = time.monotonic()
    overrides = [f"+config_paths=[{','.join(CONFIGS)}]", "+colocate=true", "+head_server.port=0", *args.extra]
    if args.delay_s:
        overrides.append(f"++policy_model.responses_api_models.scripted_model.delay_s={args.delay_s}")
    deployment = build_deployment(load_config(ParserConfig(cli_args=overrides)))
    launcher = Launcher(deployment, out=open(os.devnull, "w"), host_colocated_here=True)
    launcher.start()
    peak = [0]
    sampling = [True]

    def sample() -> None:
        while sampling[0]:
            peak[0] = max(peak[0], rss_bytes([os.getpid()]))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    marks: dict[str, float] = {}

    async def go() -> tuple[float, tuple[float, list[float], int]]:
        async with HostedServers(deployment.config, deployment.colocated):
            ready = time.monotonic() - t0
            client = ServerClient.from_config(deployment.config)
            warmup = args.warmup if args.warmup >= 0 else min(n, max(64, concurrency))
            return ready, await drive(client, n, concurrency, warmup, lambda: marks.update(cpu=time.process_time()))

    try:
        ready_s, (wall, lat, failures) = asyncio.run(go())
        cpu = time.process_time() - marks["cpu"]
    finally:
        sampling[0] = False
        launcher.stop()
    return {
        **throughput(n, wall, lat),
        "cpu_ms_per_rollout_all": 1000 * cpu / n,
        "peak_rss_mb": peak[0] / 2**20,
        "ready_s": ready_s,
        "failures": failures,
        "wall_s": wall,
    }


def one_run(args: argparse.Namespace, concurrency: int, n: int) -> dict:
    if args.in_process:
        return one_run_in_process(args, concurrency, n)
    port = 11500 + (os.getpid() % 400)
    dep = Deployment(port, args.delay_s, [*args.extra, *(["+colocate=true"] if args.colocate else [])])
    marks: dict[str, float] = {}

    def start() -> None:  # CPU counts from the end of the warm-up; peak memory over the whole run
        marks["cpu"], marks["me"] = cpu_seconds(tree(dep.proc.pid)), time.process_time()

    try:
        warmup = args.warmup if args.warmup >= 0 else min(n, max(64, concurrency))
        wall, lat, failures = asyncio.run(drive(dep.head, n, concurrency, warmup, start))
        cpu1, me1 = cpu_seconds(tree(dep.proc.pid)), time.process_time()
        cpu0, me0 = marks["cpu"], marks["me"]
    finally:
        dep.stop()
    return {
        **throughput(n, wall, lat),
        "cpu_ms_per_rollout_servers": 1000 * (cpu1 - cpu0) / n,
        "cpu_ms_per_rollout_driver": 1000 * (me1 - me0) / n,
        "cpu_ms_per_rollout_all": 1000 * ((cpu1 - cpu0) + (me1 - me0)) / n,
        "peak_rss_mb": dep.peak_rss / 2**20,
        "ready_s": dep.ready_s,
        "failures": failures,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--rollouts", type=int, default=0, help="rollouts per run (default: 200 at c=1, else 8*c, min 1000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay-s", type=float, default=0.0, help="fixed latency of every model call")
    parser.add_argument("--label", default="ngym")
    parser.add_argument("--warmup", type=int, default=-1,
                        help="rollouts before the timed ones, at the same concurrency (default: max(64, concurrency))")
    parser.add_argument("--colocate", action="store_true", help="host every server in one process (+colocate=true)")
    parser.add_argument("--in-process", action="store_true",
                        help="servers and driver in this process (one-shot ng_collect_rollouts +colocate=true)")
    parser.add_argument("--extra", nargs="*", default=[], help="extra ng_run overrides")
    parser.add_argument("--out", default=str(REPO / "bench/results.jsonl"))
    args = parser.parse_args()
    tune_gc()  # the driver is ngym's collector code: tuned as ng_collect_rollouts tunes it
    for c in args.concurrency:
        n = args.rollouts or (200 if c == 1 else max(1000, 8 * c))
        runs = [one_run(args, c, n) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        record = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "label": args.label,
            "machine": machine(),
            "colocate": args.colocate or args.in_process,
            "in_process": args.in_process,
            "concurrency": c,
            "rollouts": n,
            "delay_s": args.delay_s,
            "runs": args.runs,
            **{k: round(v, 3) for k, v in med.items()},
        }
        print(json.dumps(record), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
