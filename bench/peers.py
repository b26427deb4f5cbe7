"""ngym and its peers on the same workload, in the same run: the seed mix (example_single_tool_call —
2 model calls — and example_multi_step — 4 model calls — alternating), N rollouts with 256 in flight,
against one OpenAI-compatible model process (``bench/instant_model.py``, the scripted policy, instant).

    python bench/peers.py --setup                      # the peers' virtual environments (.venv-peers/<peer>)
    python bench/peers.py                              # 2,000 rollouts each, 3 runs, interleaved
    python bench/peers.py --rollouts 200 --runs 1 --peers skyrl-gym --modes oneshot
    python bench/peers.py --py-spy bench/profiles      # py-spy each peer's processes during run 1

ngym runs through its commands exactly as ``bench/user_path.py`` does (``per_server``: ``ng_run`` +
``ng_collect_rollouts``; ``colocate``: ``ng_run +colocate=true`` + ``ng_collect_rollouts``; ``oneshot``:
``ng_collect_rollouts "+config_paths=[...]" +colocate=true``), with ``openai_model`` in front of the model
(Responses API -> the model's ``/v1/responses``). Each peer runs ``bench/peer_envs/<peer>_peer.py`` in its
own virtual environment (nothing of theirs in ngym's dependencies), speaking chat completions to the
same model process; each driver's docstring says which parts are the peer's and which are ours.

Per system and run: rollouts/s from exec to exit (start-up included: imports, building the environments,
starting servers) and over the collection alone, CPU ms per rollout of the system's own processes (the
whole process tree, start-up included, ``wait4`` rusage) and of the model process, model calls per
rollout (3.0 for the seed mix: a check that every system did the same work), peak RSS of the tree,
rollouts written, failures and mean reward (1.0 for the scripted policy: a check that every system
scored like ngym). One JSON line per run is appended to ``--out``; the medians are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import user_path  # bench/user_path.py, beside this script
from user_path import MODES, REPO, Tree, Watched, cpu_s, median_row, model_stats

PEERS: dict[str, dict[str, str]] = {
    # name: the pinned requirement, the driver. verifiers 0.2.1 is the last release with the
    # Environment/ToolEnv/Rubric API (0.3+ is the "v1" Taskset/Harness stack: see bench/README.md).
    "verifiers": {"requirement": "verifiers==0.2.1", "driver": "verifiers_peer.py"},
    "skyrl-gym": {"requirement": "skyrl-gym==0.4.0", "driver": "skyrl_gym_peer.py"},
    "openenv": {"requirement": "openenv-core==0.3.0", "driver": "openenv_peer.py"},
}
PEER_DIR = REPO / "bench" / "peer_envs"
DEFAULT_VENVS = REPO / ".venv-peers"


def peer_python(venvs: Path, peer: str) -> Path:
    return venvs / peer / "bin" / "python"


def setup(venvs: Path, peers: list[str]) -> None:
    """One virtual environment per peer (their pins conflict with each other's and with ngym's)."""
    for peer in peers:
        target = venvs / peer
        if not peer_python(venvs, peer).exists():
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        print(f"installing {PEERS[peer]['requirement']} into {target}", file=sys.stderr, flush=True)
        subprocess.run(
            [str(target / "bin" / "pip"), "install", "-q", PEERS[peer]["requirement"], "openai"], check=True
        )


def peer_run(args: argparse.Namespace, venvs: Path, peer: str, run: int, model_url: str, model_pid: int,
             work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NGYM_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PYTHONUNBUFFERED"] = "1"
    model_cpu0 = cpu_s(model_pid)
    stats0 = model_stats(model_url)
    load0 = os.getloadavg()[0]
    argv = [str(peer_python(venvs, peer)), str(PEER_DIR / PEERS[peer]["driver"]), "--base-url", model_url,
            "--rollouts", str(args.rollouts), "--concurrency", str(args.concurrency)]
    watched = Watched(argv, PEER_DIR, env, work / f"peer-{peer}-{run}.log", ready="PEER_READY")
    spy = None
    profile = None
    if args.py_spy and run == 1:
        profile = Path(args.py_spy) / f"peer-{peer}.txt"
        profile.parent.mkdir(parents=True, exist_ok=True)
        spy = start_py_spy_when_collecting(watched, profile, args.py_spy_seconds, model_url, stats0.get("calls", 0))
    wall, cpu = watched.finish(args.timeout_s)
    model_cpu = cpu_s(model_pid) - model_cpu0
    stats1 = model_stats(model_url)
    if spy is not None:
        spy.wait(args.py_spy_seconds + 30)
    result = next((json.loads(line.split(" ", 1)[1]) for line in watched.lines if line.startswith("PEER_RESULT ")), {})
    n = int(result.get("written") or 0)
    calls = stats1.get("calls", 0) - stats0.get("calls", 0) if stats1 else None
    record: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "system": f"{peer} {result.get('version', '?')}",
        "kind": "peer",
        "run": run,
        "rollouts": args.rollouts,
        "concurrency": args.concurrency,
        "exit_code": watched.proc.returncode,
        "written": n,
        "failures": result.get("failures"),
        "mean_reward": result.get("mean_reward"),
        "mean_reward_by_env": result.get("mean_reward_by_env"),
        "ready_s": round(watched.ready_s, 2) if watched.ready_s is not None else None,  # exec to PEER_READY
        "ready_in_driver_s": result.get("ready_s"),  # from the driver's first line (no interpreter start)
        "e2e_s": round(wall, 2),
        "collect_s": result.get("collect_s"),
        "rollouts_per_s": round(n / wall, 1) if wall and n else None,
        "collect_rollouts_per_s": round(n / result["collect_s"], 1) if n and result.get("collect_s") else None,
        "cpu_ms_per_rollout": round(1000 * cpu / n, 3) if n else None,
        "model_cpu_ms_per_rollout": round(1000 * model_cpu / n, 3) if n else None,
        "model_calls_per_rollout": round(calls / n, 3) if calls is not None and n else None,
        "peak_rss_mb": round(watched.peak_rss / 2**20),
        "processes": len(watched.pids),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    if profile is not None and profile.exists():
        record["profile"] = str(profile)
    if watched.proc.returncode != 0 or n != args.rollouts:
        print(f"warning: {peer} run {run}: exit {watched.proc.returncode}, {n} of {args.rollouts} rollouts",
              file=sys.stderr)
        print("".join(watched.lines[-25:]), file=sys.stderr)
    return record


def start_py_spy_when_collecting(
    watched: Watched, out: Path, seconds: int, model_url: str, calls0: int
) -> subprocess.Popen[str] | None:
    """py-spy the driver (and its children: --subprocesses) once the model has answered its first calls
    (the collection, not the start-up)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and watched.proc.poll() is None:
        if model_stats(model_url).get("calls", 0) > calls0 + 500:
            break
        time.sleep(0.2)
    else:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(watched.proc.pid), "--subprocesses", "--rate", "100", "--duration",
         str(seconds), "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def ngym_run(args: argparse.Namespace, mode: str, run: int, model_url: str, model_pid: int, work: Path) -> dict[str, Any]:
    r = user_path.one_run(args, Tree("ngym", REPO), mode, run, model_url, model_pid, work)
    calls = r.get("model_calls")
    return {
        **r,
        "system": f"ngym {mode}",
        "kind": "ngym",
        "cpu_ms_per_rollout": r["ngym_cpu_ms_per_rollout"],
        "model_calls_per_rollout": round(calls / r["written"], 3) if calls is not None and r["written"] else None,
    }


def table(records: list[dict[str, Any]], out: TextIO) -> None:
    keys = ["rollouts_per_s", "collect_rollouts_per_s", "cpu_ms_per_rollout", "model_cpu_ms_per_rollout",
            "model_calls_per_rollout", "peak_rss_mb", "ready_s"]
    print("| system | runs | rollouts/s (start-up incl.) | rollouts/s (collection) | CPU ms/rollout (its processes) | "
          "model CPU ms/rollout | model calls/rollout | peak RSS MB | ready s | written / failed | mean reward | load |",
          file=out)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", file=out)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["system"], []).append(r)
    for system, rs in groups.items():
        print(median_row([system], rs, keys), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"ngym's modes, comma-separated, of {MODES}; '' for none")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {list(PEERS)}; '' for none")
    parser.add_argument("--venvs", default=str(DEFAULT_VENVS), help="where the peers' virtual environments are")
    parser.add_argument("--setup", action="store_true", help="create/update the peers' virtual environments and exit")
    parser.add_argument("--py-spy", metavar="DIR", help="py-spy each peer (and ngym's model server) during run 1")
    parser.add_argument("--py-spy-seconds", type=int, default=15)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", default=str(REPO / "bench" / "peers_results.jsonl"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (inputs, outputs, logs)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    peers = [p for p in args.peers.split(",") if p]
    bad = [m for m in modes if m not in MODES] + [p for p in peers if p not in PEERS]
    if bad:
        parser.error(f"unknown mode(s)/peer(s) {bad}; modes {MODES}, peers {list(PEERS)}")
    venvs = Path(args.venvs)
    if args.setup:
        setup(venvs, peers)
        return 0
    missing = [p for p in peers if not peer_python(venvs, p).exists()]
    if missing:
        parser.error(f"no virtual environment for {missing} under {venvs}: run `python bench/peers.py --setup` first")
    # what user_path.one_run reads
    args.model, args.delay_s, args.model_server = "openai_model", 0.0, "instant"
    work = Path(tempfile.mkdtemp(prefix="ngym-peers-"))
    user_path.write_rows(work / "input.jsonl", args.rollouts)
    port = user_path.free_port()
    model = user_path.start_model(args, port)
    url = f"http://127.0.0.1:{port}/v1"
    records: list[dict[str, Any]] = []
    print(f"{os.cpu_count()} cpus, load {os.getloadavg()}, model pid {model.pid}, work dir {work}", file=sys.stderr)
    try:
        for run in range(1, args.runs + 1):
            for system in [*(("ngym", m) for m in modes), *(("peer", p) for p in peers)]:
                if system[0] == "ngym":
                    record = ngym_run(args, system[1], run, url, model.pid, work)
                else:
                    record = peer_run(args, venvs, system[1], run, url, model.pid, work)
                records.append(record)
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"{record['system']} run {run}: {record['rollouts_per_s']} rollouts/s "
                      f"(collection {record['collect_rollouts_per_s']}), {record['cpu_ms_per_rollout']} CPU ms/rollout, "
                      f"{record['written']} written, {record['failures']} failed, reward {record['mean_reward']}, "
                      f"load {record['load_before']}", file=sys.stderr, flush=True)
    finally:
        model.send_signal(signal.SIGINT)
        try:
            model.wait(10)
        except subprocess.TimeoutExpired:
            model.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table(records, sys.stdout)
    return 0 if all(r["written"] == args.rollouts and r["mean_reward"] == 1.0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
