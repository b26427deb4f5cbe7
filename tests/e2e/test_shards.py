"""Sharded collection with real processes (issue 17): ``ng_collect_rollouts +num_shards=2``, one-shot
and co-located (each shard hosts its own servers), against running servers (``ng_run``); ``kill
-9`` of a shard or of the driver mid-run, and Ctrl-C; the same command run again completes with
every (task, rollout) exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import alive, command_env, free_port
from tests.e2e.procs import NgRun, read_jsonl

pytestmark = pytest.mark.slow

SCRIPTED = "responses_api_models/scripted_model/configs/scripted_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
MULTI = "resources_servers/example_multi_step/configs/example_multi_step.yaml"
DELAY = "++policy_model.responses_api_models.scripted_model.delay_s=0.1"
REPEATS = 30  # 10 rows: 300 rollouts


def mixed_input(workdir: Path) -> None:
    rows = []
    for env in ("example_single_tool_call", "example_multi_step"):
        for line in (workdir / f"resources_servers/{env}/data/example.jsonl").read_text().splitlines():
            rows.append(json.loads(line) | {"agent_ref": {"name": f"{env}_simple_agent"}})
    (workdir / "results/in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def sharded(workdir: Path, *extra: str) -> list[str]:
    return ["ng_collect_rollouts", f"+config_paths=[{SCRIPTED},{SINGLE},{MULTI}]", "+colocate=true", "+num_shards=2",
            "+input_jsonl_fpath=results/in.jsonl", "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true",
            f"+num_repeats={REPEATS}", "+num_samples_in_parallel=40", "+resume=true", DELAY, *extra]


def start(workdir: Path, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=workdir, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def shard_pids(driver: int) -> list[int]:
    """The driver's children: its shards (forks of it; with +colocate=true they start no process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == driver and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def wait_for_progress(workdir: Path, driver: subprocess.Popen[str], lines: int) -> list[int]:
    """Both shards running and at least ``lines`` rollouts in their files; their pids."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()
        pids = shard_pids(driver.pid)
        files = list((workdir / "results/out_shards").glob("shard-*.jsonl"))
        done = sum(f.read_bytes().count(b"\n") for f in files if f.name[6:-6].isdigit())
        if len(pids) == 2 and done >= lines:
            return pids
        time.sleep(0.05)
    raise AssertionError("the shards did not make progress")


def assert_exactly_once(workdir: Path) -> list[dict[str, Any]]:
    rows = read_jsonl(workdir / "results/out.jsonl")
    keys = sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows)
    assert keys == [(t, r) for t in range(10) for r in range(REPEATS)]  # every (task, rollout) once
    assert all(r["reward"] == 1.0 for r in rows)
    assert not (workdir / "results/out_shards").exists()
    return rows


def gone(pids: list[int], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


def test_kill_9_of_a_shard_mid_run_then_the_same_command_completes_exactly_once(workdir: Path) -> None:
    mixed_input(workdir)
    driver = start(workdir, sharded(workdir))
    victim, other = wait_for_progress(workdir, driver, 20)
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 1, stdout + stderr
    assert "was killed by SIGKILL" in stderr and "+resume=true" in stderr
    assert gone([victim, other])
    kept = read_jsonl(workdir / "results/out.jsonl")
    assert 20 <= len(kept) < 10 * REPEATS  # the other shard finished its share, the victim's work so far is kept
    again = subprocess.run(sharded(workdir), cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"({len(kept)} already done)" in again.stdout
    assert_exactly_once(workdir)


def test_ctrl_c_stops_every_shard_and_keeps_what_they_completed(workdir: Path) -> None:
    mixed_input(workdir)
    driver = start(workdir, sharded(workdir))
    pids = wait_for_progress(workdir, driver, 20)
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stdout + stderr
    assert "every shard stopped" in stderr
    assert gone(pids, 5)
    kept = read_jsonl(workdir / "results/out.jsonl")
    assert len(kept) >= 20 and len({(r["_ng_task_index"], r["_ng_rollout_index"]) for r in kept}) == len(kept)
    assert not (workdir / "results/out_shards").exists()  # folded into the output
    again = subprocess.run(sharded(workdir), cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_exactly_once(workdir)


def test_kill_9_of_the_driver_ends_its_shards_and_the_rerun_folds_what_they_left(workdir: Path) -> None:
    mixed_input(workdir)
    driver = start(workdir, sharded(workdir))
    pids = wait_for_progress(workdir, driver, 20)
    driver.kill()
    driver.communicate(timeout=30)
    assert gone(pids)  # the shards end with their driver
    left = sum(f.read_bytes().count(b"\n") for f in (workdir / "results/out_shards").glob("shard-?.jsonl"))
    assert left >= 20
    again = subprocess.run(sharded(workdir), cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "moved into" in again.stderr and "already done" in again.stdout
    assert_exactly_once(workdir)


def test_two_shards_against_running_servers_write_one_output(workdir: Path) -> None:
    mixed_input(workdir)
    port = free_port()
    run = NgRun([f"+config_paths=[{SCRIPTED},{SINGLE},{MULTI}]", f"+head_server.port={port}"], workdir)
    try:
        run.wait_ready()
        done = subprocess.run(
            ["ng_collect_rollouts", f"+head_server.port={port}", "+num_shards=2", "+input_jsonl_fpath=results/in.jsonl",
             "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true", f"+num_repeats={REPEATS}"],
            cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{10 * REPEATS} rollouts written" in done.stdout
        assert_exactly_once(workdir)
        metrics = json.loads((workdir / "results/out_agent_metrics.json").read_text())
        assert metrics  # the metrics of the whole output, as one process writes them
    finally:
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(30)


def test_shards_as_ray_tasks_on_a_local_cluster_write_one_output(workdir: Path) -> None:
    pytest.importorskip("ray")
    mixed_input(workdir)
    done = subprocess.run(sharded(workdir, "+ray=true"), cwd=workdir, env=command_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{10 * REPEATS} rollouts written" in done.stdout
    assert_exactly_once(workdir)
