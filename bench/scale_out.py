"""Scale-out through the user's commands: rollouts/s vs shards of one collection, and vs replicas
of the model server. Figures come from the commands' real output files (as ``user_path.py``,
whose process tools this reuses).

    python bench/scale_out.py shards                     # one-shot +colocate=true, the scripted model co-located: 1 vs 2 shards
    python bench/scale_out.py shards --workload instant  # the model in its own process (bench/instant_model.py)
    python bench/scale_out.py replicas                   # ng_run, scripted model with 8 slots and 50 ms per call: 1, 2, 4 replicas
    python bench/scale_out.py inflight                   # 16,000 in flight, a 1 s model over HTTP, sharded one-shot collection

* ``shards``: ``ng_collect_rollouts "+config_paths=[scripted_model.yaml, example_single_tool_call.yaml,
  example_multi_step.yaml]" +colocate=true +num_shards=K`` (``--workload inprocess``: every server,
  the model included, hosted in each shard; ``instant``: the model is ``bench/instant_model.py`` in
  its own process, behind ``openai_model``), the seed mix (as ``user_path.py``), runs interleaved
  (K = 1, 2, 1, 2, ...) so each ratio is measured in the same run.
* ``replicas``: ``ng_run`` (a process per server) with the scripted model answering each call after
  ``--delay-s`` and at most ``--slots`` calls at once per replica (a GPU server's slots: the model
  is the bottleneck), ``num_replicas`` R for ``policy_model``; then ``ng_collect_rollouts``.
* ``inflight``: ``--concurrency`` rollouts in flight (16,000) with the instant model answering
  after 1 s, one-shot ``+colocate=true +num_shards=K``: model calls over HTTP, a share of the
  sockets per shard.

One JSON line per run is appended to ``--out`` (default ``bench/scale_out_results.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from user_path import (  # bench/user_path.py, beside this script
    ENV_CONFIGS,
    MODEL_CONFIGS,
    REPO,
    WRITTEN,
    Tree,
    Watched,
    bin_path,
    command_env,
    free_port,
    read_output,
    write_rows,
)

SCRIPTED = "responses_api_models/scripted_model/configs/scripted_model.yaml"
MODEL_KEY = "policy_model.responses_api_models.scripted_model"
RETRIED = re.compile(r"(\d+) failed attempt\(s\) were retried")


def start_instant(delay_s: float, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "instant_model.py"), "--port", str(port), "--delay-s", str(delay_s)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the instant model exited") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the instant model did not start in 60 s")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def record_of(args: argparse.Namespace, experiment: str, label: str, run: int, watched: Watched, ready_s: float,
              wall: float, cpu: float, output: Path, load0: float, extra: dict[str, Any]) -> dict[str, Any]:
    text = "".join(watched.lines)
    written = WRITTEN.search(text)
    found = read_output(output) if output.exists() else {"written": 0, "failures": None, "mean_reward": None}
    n = int(found["written"] or 0)
    collect_s = float(written.group(2)) if written else None
    resets = sum(line.count("reset") for line in watched.lines)
    timeouts = sum(line.count("Connection timeout") for line in watched.lines)
    retried = RETRIED.search(text)
    rec = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cpus",
        "experiment": experiment,
        "label": label,
        "run": run,
        "rollouts": args.rollouts,
        "concurrency": args.concurrency,
        "exit_code": watched.proc.returncode,
        "written": n,
        "failures": found["failures"],
        "mean_reward": found["mean_reward"],
        "ready_s": round(ready_s, 2),
        "e2e_s": round(wall, 2),
        "collect_s": collect_s,
        "rollouts_per_s": round(n / wall, 1) if wall else None,
        "collect_rollouts_per_s": round(n / collect_s, 1) if collect_s else None,
        "cpu_ms_per_rollout": round(1000 * cpu / n, 3) if n else None,
        "peak_rss_mb": round(watched.peak_rss / 2**20),
        "reset_mentions": resets,
        "connect_timeout_mentions": timeouts,
        "retried_attempts": int(retried.group(1)) if retried else 0,
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        **extra,
    }
    if watched.proc.returncode != 0 or n != args.rollouts:
        print(f"warning: {label} run {run}: exit {watched.proc.returncode}, {n} of {args.rollouts}", file=sys.stderr)
        print("".join(watched.lines[-15:]), file=sys.stderr)
    return rec


def one_shot(args: argparse.Namespace, work: Path, run: int, shards: int, configs: list[str], extra_args: list[str],
             experiment: str) -> dict[str, Any]:
    label = f"{experiment}-{args.workload}-{shards}shard"
    output = work / f"{label}-{run}.jsonl"
    argv = [
        bin_path("ng_collect_rollouts"), f"+config_paths=[{','.join(configs)}]", "+colocate=true",
        f"+num_shards={shards}", f"+input_jsonl_fpath={work / 'input.jsonl'}", f"+output_jsonl_fpath={output}",
        f"+num_samples_in_parallel={args.concurrency}", "+no_progress=true", *extra_args,
    ]
    load0 = os.getloadavg()[0]
    watched = Watched(argv, REPO, command_env(Tree("this", REPO)), work / f"{label}-{run}.log", ready="servers ready")
    ready_s = watched.wait_ready(300)
    wall, cpu = watched.finish(args.timeout_s)
    return record_of(args, experiment, label, run, watched, ready_s, wall, cpu, output, load0,
                     {"shards": shards, "workload": args.workload})


def shards_experiment(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    records = []
    model = None
    extra: list[str] = []
    if args.workload == "instant" or args.experiment == "inflight":
        port = free_port()
        model = start_instant(args.delay_s, port)
        configs = [MODEL_CONFIGS["openai_model"], *ENV_CONFIGS]
        extra = [f"+policy_base_url=http://127.0.0.1:{port}/v1", "+policy_api_key=bench-key", "+policy_model_name=scripted"]
    else:
        configs = [SCRIPTED, *ENV_CONFIGS]
        if args.delay_s:
            extra = [f"++{MODEL_KEY}.delay_s={args.delay_s}"]
    try:
        for run in range(1, args.runs + 1):
            for k in args.shards:
                rec = one_shot(args, work, run, k, configs, extra, args.experiment)
                records.append(rec)
                emit(args, rec)
    finally:
        if model is not None:
            stop(model)
    return records


def replicas_experiment(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    records = []
    configs = ",".join([SCRIPTED, *ENV_CONFIGS])
    for run in range(1, args.runs + 1):
        for replicas in args.replicas:
            label = f"replicas-{replicas}"
            output = work / f"{label}-{run}.jsonl"
            head = free_port()
            env = command_env(Tree("this", REPO))
            load0 = os.getloadavg()[0]
            ng_run = Watched(
                [bin_path("ng_run"), f"+config_paths=[{configs}]", f"+head_server.port={head}",
                 f"++{MODEL_KEY}.delay_s={args.delay_s}", f"++{MODEL_KEY}.max_concurrent_calls={args.slots}",
                 f"++{MODEL_KEY}.num_replicas={replicas}"],
                REPO, env, work / f"{label}-{run}.ng_run.log", ready="servers ready",
            )
            ready_s = ng_run.wait_ready(300)
            collector = Watched(
                [bin_path("ng_collect_rollouts"), f"+head_server.port={head}", f"+input_jsonl_fpath={work / 'input.jsonl'}",
                 f"+output_jsonl_fpath={output}", f"+num_samples_in_parallel={args.concurrency}", "+no_progress=true"],
                REPO, env, work / f"{label}-{run}.collect.log", ready=None,
            )
            wall, cpu = collector.finish(args.timeout_s)
            _, run_cpu = ng_run.stop()
            rec = record_of(args, "replicas", label, run, collector, ready_s, wall, cpu + run_cpu, output, load0,
                            {"replicas": replicas, "slots": args.slots, "delay_s": args.delay_s})
            records.append(rec)
            emit(args, rec)
    return records


def emit(args: argparse.Namespace, rec: dict[str, Any]) -> None:
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{rec['label']} run {rec['run']}: {rec['rollouts_per_s']} rollouts/s (collection {rec['collect_rollouts_per_s']}), "
          f"{rec['written']} written, {rec['failures']} failed, {rec['retried_attempts']} attempts retried, "
          f"load {rec['load_before']}", file=sys.stderr, flush=True)


def table(records: list[dict[str, Any]]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["label"], []).append(r)
    print("| command | runs | rollouts/s (start-up incl.), median (min–max) | rollouts/s (collection) | CPU ms/rollout "
          "| written / failed | load |")
    print("|---|---|---|---|---|---|---|")
    for label, rs in groups.items():
        per_s = [r["rollouts_per_s"] or 0 for r in rs]
        coll = [r["collect_rollouts_per_s"] or 0 for r in rs]
        cpu = [r["cpu_ms_per_rollout"] or 0 for r in rs]
        loads = [r["load_before"] for r in rs]
        print(f"| {label} | {len(rs)} | **{statistics.median(per_s):.1f}** ({min(per_s)}–{max(per_s)}) | "
              f"{statistics.median(coll):.1f} | {statistics.median(cpu):.2f} | {sum(r['written'] for r in rs)} / "
              f"{sum(r['failures'] or 0 for r in rs)} | {min(loads):.1f}–{max(loads):.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=["shards", "replicas", "inflight"])
    parser.add_argument("--rollouts", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", default="1,2", help="shard counts, interleaved")
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--workload", choices=["inprocess", "instant"], default="inprocess")
    parser.add_argument("--delay-s", type=float)
    parser.add_argument("--slots", type=int, default=8, help="replicas: calls one model replica answers at once")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", default=str(REPO / "bench" / "scale_out_results.jsonl"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    defaults = {"shards": (8000, 256, 0.0), "replicas": (2000, 256, 0.05), "inflight": (32000, 16000, 1.0)}[args.experiment]
    args.rollouts = args.rollouts or defaults[0]
    args.concurrency = args.concurrency or defaults[1]
    args.delay_s = defaults[2] if args.delay_s is None else args.delay_s
    args.shards = [int(k) for k in args.shards.split(",")]
    args.replicas = [int(r) for r in args.replicas.split(",")]
    if args.experiment == "inflight":
        args.workload = "instant"
    work = Path(tempfile.mkdtemp(prefix="ngym-scale-out-"))
    write_rows(work / "input.jsonl", args.rollouts)
    print(f"{os.cpu_count()} cpus, load {os.getloadavg()}, work dir {work}", file=sys.stderr)
    try:
        records = replicas_experiment(args, work) if args.experiment == "replicas" else shards_experiment(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table(records)
    return 0 if all(r["written"] == args.rollouts for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
