"""The user's path, measured: an OpenAI-compatible model server in its own process, and the real
commands — ``ng_run`` + ``ng_collect_rollouts`` (a process per server, or ``+colocate=true``), and
the one-shot ``ng_collect_rollouts "+config_paths=[...]" +colocate=true`` — over the seed mix
(example_single_tool_call and example_multi_step rows, alternating, ``agent_ref`` stamped,
repeated to N rows). Figures come from the commands' real output files.

    python bench/user_path.py                              # 8,000 rollouts at 256 in flight, median of 3
    python bench/user_path.py --before 132f1f2             # another commit's tree (exported) next to this one, interleaved
    python bench/user_path.py --model vllm_model --delay-s 0.05 --concurrency 1024
    python bench/user_path.py --py-spy bench/profiles      # py-spy the model server during run 1

Per mode and tree: rollouts/s from launching the first command to the collector's exit (start-up
included) and over the collection alone (the collector's own "written in" time), CPU seconds per
rollout of ngym's processes (``ng_run`` and every server, the collector; start-up included) and of
the model process, peak RSS of ``ng_run`` + children + the collector, time to ready (launch until
"servers ready"), rollouts written, failures, mean reward. One JSON line per run is appended to
``--out`` (default ``bench/user_path_results.jsonl``); the medians are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from procfs import rss_bytes, tree  # bench/procfs.py, beside this script

REPO = Path(__file__).resolve().parents[1]
CLK = os.sysconf("SC_CLK_TCK")
MODES = ("per_server", "colocate", "oneshot")
MODEL_CONFIGS = {
    "openai_model": "responses_api_models/openai_model/configs/openai_model.yaml",
    "vllm_model": "responses_api_models/vllm_model/configs/vllm_model.yaml",
}
ENV_CONFIGS = [
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    "resources_servers/example_multi_step/configs/example_multi_step.yaml",
]
AGENTS = ["example_single_tool_call_simple_agent", "example_multi_step_simple_agent"]
DATA = [
    "resources_servers/example_single_tool_call/data/example.jsonl",
    "resources_servers/example_multi_step/data/example.jsonl",
]


# ---- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system seconds of one live process (itself, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def reap(proc: subprocess.Popen[str], timeout_s: float) -> float:
    """Wait for ``proc`` and return the CPU seconds of it and every descendant it waited for."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


class Watched:
    """A started command: its output lines are kept (and scanned for ``ready``), its process tree's
    RSS sampled."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, ready: str | None) -> None:
        self.t0 = time.monotonic()
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.ready_pattern = ready
        self.ready_s: float | None = None
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.log = log.open("w")
        self.peak_rss = 0
        self.pids: set[int] = set()
        self._sampling = True
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)
            if self.ready_pattern and self.ready_s is None and self.ready_pattern in line:
                self.ready_s = time.monotonic() - self.t0
                self.ready.set()
        self.ready.set()

    def _sample(self) -> None:
        while self._sampling and self.proc.returncode is None:
            try:
                pids = tree(self.proc.pid)
                self.pids.update(pids)
                self.peak_rss = max(self.peak_rss, rss_bytes(pids))
            except OSError:
                pass
            time.sleep(0.1)

    def wait_ready(self, timeout_s: float) -> float:
        if not self.ready.wait(timeout_s) or self.ready_s is None:
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not get ready; its output:\n{''.join(self.lines[-40:])}")
        return self.ready_s

    def finish(self, timeout_s: float) -> tuple[float, float]:
        """(wall seconds since start, CPU seconds of the tree) once the command has exited."""
        cpu = reap(self.proc, timeout_s)
        wall = time.monotonic() - self.t0
        self._sampling = False
        time.sleep(0.05)
        self.log.close()
        return wall, cpu

    def stop(self, timeout_s: float = 30) -> tuple[float, float]:
        if self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        return self.finish(timeout_s)


def model_server_pid(root: int) -> int:
    """The process serving ``policy_model`` under ``root``: its own process (``NGYM_INSTANCE``), else the
    process hosting the co-located servers, else ``root`` itself (one-shot co-located)."""
    hosting = None
    for pid in tree(root):
        if pid == root:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"NGYM_INSTANCE=policy_model" in environ:
            return pid
        if any(e.startswith(b"NGYM_INSTANCES=") and b"policy_model" in e for e in environ):
            hosting = pid
    return hosting or root


# ---- the workload ----------------------------------------------------------------------------


def write_rows(path: Path, n: int) -> None:
    """N rows of the seed mix: the first row of each example file, alternating, agent_ref stamped."""
    seeds = []
    for data, agent in zip(DATA, AGENTS, strict=True):
        row = json.loads((REPO / data).read_text().splitlines()[0])
        row["agent_ref"] = {"name": agent}
        seeds.append(json.dumps(row))
    path.write_text("".join(seeds[i % 2] + "\n" for i in range(n)))


def read_output(output: Path) -> dict[str, Any]:
    rewards = []
    agents: Counter[str] = Counter()
    for line in output.read_text().splitlines():
        row = json.loads(line)
        rewards.append(float(row["reward"]))
        agents[row.get("agent_ref", {}).get("name", "?")] += 1
    failures_path = output.with_name(output.stem + "_failures.jsonl")
    # failed rollouts; lines with "retried": true record attempts that were tried again
    failures = sum(1 for line in failures_path.read_text().splitlines() if not json.loads(line).get("retried")) \
        if failures_path.exists() else 0
    metrics_path = output.with_name(output.stem + "_agent_metrics.json")
    return {
        "written": len(rewards),
        "failures": failures,
        "mean_reward": statistics.fmean(rewards) if rewards else None,
        "by_agent": dict(agents),
        "agent_metrics_file": metrics_path.exists(),
    }


WRITTEN = re.compile(r"(\d+) rollouts written in ([0-9.]+) s")


# ---- py-spy ------------------------------------------------------------------------------------


def start_py_spy(pid: int, out: Path, duration_s: int) -> subprocess.Popen[str] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy is not installed (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", "200", "--duration", str(duration_s), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def summarize_profile(raw: Path, top: int = 14) -> list[tuple[str, float, float]]:
    """(function, % of samples with it on the stack, % with it on top) from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r" \(.*?\)$", "", f.strip()) for f in stack.split(";")]
        frames = [f for f in frames if f and not f.startswith("process ") and not f.startswith("thread ")]
        total += n
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    if not total:
        return []
    rows = [(f, 100 * c / total, 100 * own[f] / total) for f, c in inclusive.items() if c / total < 0.97]
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def frame_share(raw: Path, needles: tuple[str, ...]) -> float:
    """% of samples with a frame from any of ``needles`` (module paths) on the stack."""
    hit = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        if any(n in stack for n in needles):
            hit += int(count)
    return 100 * hit / total if total else 0.0


# ---- one run -----------------------------------------------------------------------------------


@dataclass
class Tree:
    """An ngym source tree to run the commands from (this one, or an exported older commit)."""

    label: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)


def command_env(tree_: Tree) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGYM_")}
    env["PYTHONPATH"] = str(tree_.root)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def model_stats(url: str) -> dict[str, int]:
    """The instant model's counters (calls answered, connections accepted); empty for another server."""
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as answer:
            stats: dict[str, int] = json.loads(answer.read())
            return stats
    except (OSError, ValueError):
        return {}


def one_run(
    args: argparse.Namespace, tree_: Tree, mode: str, run: int, model_url: str, model_pid: int, work: Path
) -> dict[str, Any]:
    tag = f"{tree_.label}-{mode}-{run}"
    inputs = work / "input.jsonl"
    output = work / f"{tag}.jsonl"
    configs = ",".join([MODEL_CONFIGS[args.model], *ENV_CONFIGS])
    common = [
        f"+policy_base_url={model_url}",
        "+policy_api_key=bench-key",
        "+policy_model_name=scripted",
    ]
    collect_args = [
        f"+input_jsonl_fpath={inputs}",
        f"+output_jsonl_fpath={output}",
        f"+num_samples_in_parallel={args.concurrency}",
        "+no_progress=true",
    ]
    env = command_env(tree_)
    model_cpu0 = cpu_s(model_pid)
    stats0 = model_stats(model_url)
    load0 = os.getloadavg()[0]
    profile = None
    spy = None
    head_port = free_port()
    ng_run: Watched | None = None
    if mode in ("per_server", "colocate"):
        argv = [bin_path("ng_run"), f"+config_paths=[{configs}]", f"+head_server.port={head_port}", *common]
        if mode == "colocate":
            argv.append("+colocate=true")
        ng_run = Watched(argv, tree_.root, env, work / f"{tag}.ng_run.log", ready="servers ready")
        ready_s = ng_run.wait_ready(180)
        collector = Watched(
            [bin_path("ng_collect_rollouts"), f"+head_server.port={head_port}", *collect_args],
            tree_.root, env, work / f"{tag}.collect.log", ready=None,
        )
        root_for_spy = ng_run.proc.pid
    else:
        argv = [bin_path("ng_collect_rollouts"), f"+config_paths=[{configs}]", "+colocate=true", *common, *collect_args]
        collector = Watched(argv, tree_.root, env, work / f"{tag}.collect.log", ready="servers ready")
        ready_s = collector.wait_ready(180)
        root_for_spy = collector.proc.pid
    if args.py_spy and run == 1:
        profile = Path(args.py_spy) / f"{tag}.txt"
        profile.parent.mkdir(parents=True, exist_ok=True)
        spy = start_py_spy(model_server_pid(root_for_spy), profile, args.py_spy_seconds)
    collect_wall, collect_cpu = collector.finish(args.timeout_s)
    if ng_run is not None:
        _, run_cpu = ng_run.stop()
        peak = ng_run.peak_rss + collector.peak_rss
        e2e_s = ready_s + collect_wall
        launch = ng_run
    else:
        run_cpu = 0.0
        peak = collector.peak_rss
        e2e_s = collect_wall
        launch = collector
    model_cpu = cpu_s(model_pid) - model_cpu0
    stats1 = model_stats(model_url)
    if spy is not None:
        spy.wait(args.py_spy_seconds + 30)
    text = "".join(collector.lines)
    written = WRITTEN.search(text)
    found = read_output(output) if output.exists() else {"written": 0, "failures": None, "mean_reward": None}
    n = int(found["written"] or 0)
    record: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "tree": tree_.label,
        "mode": mode,
        "model": args.model,
        "run": run,
        "rollouts": args.rollouts,
        "concurrency": args.concurrency,
        "delay_s": args.delay_s,
        "exit_code": collector.proc.returncode,
        **found,
        "ready_s": round(ready_s, 2),
        "e2e_s": round(e2e_s, 2),
        "collect_s": float(written.group(2)) if written else None,
        "rollouts_per_s": round(n / e2e_s, 1) if e2e_s else None,
        "collect_rollouts_per_s": round(n / float(written.group(2)), 1) if written and float(written.group(2)) else None,
        "ngym_cpu_ms_per_rollout": round(1000 * (collect_cpu + run_cpu) / n, 3) if n else None,
        "model_cpu_ms_per_rollout": round(1000 * model_cpu / n, 3) if n else None,
        "model_calls": stats1.get("calls", 0) - stats0.get("calls", 0) if stats1 else None,
        "model_connections": stats1.get("connections", 0) - stats0.get("connections", 0) if stats1 else None,
        "peak_rss_mb": round(peak / 2**20),
        "processes": len(launch.pids),
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    if profile is not None and profile.exists():
        record["profile"] = str(profile)
        record["profile_pool_pct"] = round(frame_share(profile, ("httpcore/_async/connection_pool",)), 1)
        record["profile_httpx_pct"] = round(frame_share(profile, ("httpx/", "httpcore/")), 1)
        record["profile_aiohttp_pct"] = round(frame_share(profile, ("aiohttp/",)), 1)
    if collector.proc.returncode != 0 or n != args.rollouts:
        print(f"warning: {tag}: exit {collector.proc.returncode}, {n} of {args.rollouts} rollouts; see {work}", file=sys.stderr)
        print("".join(collector.lines[-15:]), file=sys.stderr)
    return record


# ---- the model process and the trees -------------------------------------------------------------


def start_model(args: argparse.Namespace, port: int) -> subprocess.Popen[str]:
    argv = [sys.executable, str(REPO / "bench" / "instant_model.py"), "--port", str(port), "--delay-s", str(args.delay_s)]
    if args.model_server == "scripted_openai":
        argv = [sys.executable, "-m", "ngym.devkit.testing.scripted_openai", "--port", str(port), "--delay-s", str(args.delay_s)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the model server exited: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the model server did not start in 60 s")


def export_tree(ref: str, into: Path) -> Tree:
    """``git archive`` of ``ref`` (no worktree, nothing in the repository's metadata changes)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    return Tree(f"before:{ref}@{sha}", into)


def check_tree(tree_: Tree) -> None:
    """The commands run with this tree's ngym, not the installed one."""
    found = subprocess.run(
        [sys.executable, "-c", "import ngym; print(ngym.__file__)"], env=command_env(tree_), capture_output=True, text=True,
        cwd=tree_.root, check=True,
    ).stdout.strip()
    if not found.startswith(str(tree_.root)):
        raise RuntimeError(f"{tree_.label}: ngym imports from {found}, not from {tree_.root}")


# ---- table ---------------------------------------------------------------------------------------


def med(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_row(labels: list[str], rs: list[dict[str, Any]], keys: list[str]) -> str:
    """One table row of several runs: the labels, the runs, the median of each of ``keys`` (the
    first in bold with its range), written / failed, the median reward and the load range."""
    m = {k: med([r.get(k) for r in rs]) for k in keys}
    first = [r.get(keys[0]) or 0 for r in rs]
    spread = f" ({min(first):g}–{max(first):g})" if len(rs) > 1 else ""
    loads = [r["load_before"] for r in rs]
    cells = [*labels, str(len(rs)), f"**{m[keys[0]]}**{spread}", *(str(m[k]) for k in keys[1:]),
             f"{sum(r['written'] for r in rs)} / {sum(r['failures'] or 0 for r in rs)}",
             str(med([r["mean_reward"] for r in rs])), f"{min(loads):.1f}–{max(loads):.1f}"]
    return "| " + " | ".join(cells) + " |"


def table(records: list[dict[str, Any]], out: TextIO) -> None:
    keys = ["rollouts_per_s", "collect_rollouts_per_s", "ngym_cpu_ms_per_rollout", "model_cpu_ms_per_rollout",
            "peak_rss_mb", "ready_s"]
    print("| tree | mode | runs | rollouts/s (start-up incl.) | rollouts/s (collection) | ngym CPU ms/rollout | "
          "model CPU ms/rollout | peak RSS MB | ready s | written / failed | mean reward | load |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", file=out)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["tree"], r["mode"]), []).append(r)
    for (tree_label, mode), rs in groups.items():
        print(median_row([tree_label, mode], rs, keys), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--model", choices=sorted(MODEL_CONFIGS), default="openai_model")
    parser.add_argument("--model-server", choices=["instant", "scripted_openai"], default="instant",
                        help="instant: bench/instant_model.py (bare asyncio); scripted_openai: the FastAPI one")
    parser.add_argument("--delay-s", type=float, default=0.0, help="the model answers each call after this delay")
    parser.add_argument("--before", metavar="REF", help="also run the commands from this git ref (exported), interleaved")
    parser.add_argument("--py-spy", metavar="DIR", help="py-spy the model server process during run 1 of each mode")
    parser.add_argument("--py-spy-seconds", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", default=str(REPO / "bench" / "user_path_results.jsonl"))
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines, not the table")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (inputs, outputs, logs)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {MODES}")
    work = Path(tempfile.mkdtemp(prefix="ngym-user-path-"))
    trees = [Tree("this", REPO)]
    if args.before:
        trees.insert(0, export_tree(args.before, work / "before"))
    for t in trees:
        check_tree(t)
    write_rows(work / "input.jsonl", args.rollouts)
    port = free_port()
    model = start_model(args, port)
    records: list[dict[str, Any]] = []
    print(f"{os.cpu_count()} cpus, load {os.getloadavg()}, model pid {model.pid}, work dir {work}", file=sys.stderr)
    try:
        for run in range(1, args.runs + 1):
            for mode in modes:
                for t in trees:
                    record = one_run(args, t, mode, run, f"http://127.0.0.1:{port}/v1", model.pid, work)
                    records.append(record)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    print(json.dumps(record) if args.json else
                          f"{t.label} {mode} run {run}: {record['rollouts_per_s']} rollouts/s "
                          f"(collection {record['collect_rollouts_per_s']}), {record['written']} written, "
                          f"{record['failures']} failed, load {record['load_before']}", file=sys.stdout if args.json else sys.stderr,
                          flush=True)
    finally:
        model.send_signal(signal.SIGINT)
        try:
            model.wait(10)
        except subprocess.TimeoutExpired:
            model.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        table(records, sys.stdout)
        for r in records:
            if "profile" in r:
                print(f"\npy-spy of the model server, {r['tree']} {r['mode']} (httpcore pool {r['profile_pool_pct']}%, "
                      f"httpx+httpcore {r['profile_httpx_pct']}%, aiohttp {r['profile_aiohttp_pct']}% of samples):")
                if Path(r["profile"]).exists():
                    for name, incl, own in summarize_profile(Path(r["profile"])):
                        print(f"  {incl:5.1f}% on stack  {own:5.1f}% on top  {name}")
    return 0 if all(r["written"] == args.rollouts for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
