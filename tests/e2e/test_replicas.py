"""Replicas with real processes: 3 replicas of the stateful counter under many concurrent episodes
(isolation intact, load spread), and ``kill -9`` of a replica mid-collection (restarted, every
(task, rollout) exactly once, nothing scored from a lost episode)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ngym.config.schema import HeadServerConfig
from ngym.errors import ReplicaLost
from ngym.server.client import ServerClient
from ngym.server.sessions import replica_of
from tests.e2e.conftest import command_env, free_port
from tests.e2e.procs import NgRun, read_jsonl

pytestmark = pytest.mark.slow

SCRIPTED = "responses_api_models/scripted_model/configs/scripted_model.yaml"
COUNTER = "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml"
NAME = "example_session_state_mgmt_resources_server"
REPLICAS = f"++{NAME}.resources_servers.example_session_state_mgmt.num_replicas=3"


def counter_input(workdir: Path) -> None:
    rows = [json.loads(line) | {"agent_ref": {"name": "example_session_state_mgmt_simple_agent"}}
            for line in (workdir / "resources_servers/example_session_state_mgmt/data/example.jsonl").read_text().splitlines()]
    (workdir / "results/in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def replicas_of(head: str) -> list[dict]:
    return [r for r in httpx.get(head + "/server_instances").json() if r["name"] == NAME]


async def episodes(port: int, count: int) -> tuple[list[int], list[int]]:
    """``count`` concurrent episodes straight at the replicas: seed, two increments, verify.
    Returns the replica of each and the calls each replica received from this client."""
    client = await ServerClient.from_head_server(HeadServerConfig(port=port))

    async def one(i: int) -> int:
        seeded = await client.post(NAME, "/seed_session", json={"initial_count": i, "expected_count": i + 3})
        assert seeded.status_code == 200, seeded.text
        cookies = dict(seeded.cookies)
        for step in (1, 2):
            assert (await client.post(NAME, "/increment_counter", json={"count": step}, cookies=cookies)).status_code == 200
        value = (await client.post(NAME, "/get_counter_value", json={}, cookies=cookies)).json()
        assert value == {"count": i + 3}, (i, value)  # no other episode touched this one's counter
        (cookie,) = [v for k, v in cookies.items() if k.endswith(NAME)]
        replica = replica_of(cookie)
        assert replica is not None
        return replica

    try:
        where = await asyncio.gather(*(one(i) for i in range(count)))
        return list(where), list(client.pools[NAME].calls)
    finally:
        await client.aclose()


def test_three_replicas_of_a_stateful_environment_keep_episodes_isolated(workdir: Path) -> None:
    port = free_port()
    run = NgRun([f"+config_paths=[{SCRIPTED},{COUNTER}]", f"+head_server.port={port}", REPLICAS], workdir)
    try:
        run.wait_ready()
        rows = replicas_of(run.head_url)
        assert sorted(r["replica"] for r in rows) == [0, 1, 2]
        assert len({r["url"] for r in rows}) == 3 and len({r["pid"] for r in rows}) == 3
        where, calls = asyncio.run(episodes(port, 600))
        per_replica = [where.count(i) for i in range(3)]
        assert min(per_replica) >= 100, per_replica  # the load spread
        assert sum(calls) == 600 * 4
        # and through the agent: the collector's rollouts all scored right
        counter_input(workdir)
        done = subprocess.run(
            ["ng_collect_rollouts", f"+head_server.port={port}", "+input_jsonl_fpath=results/in.jsonl",
             "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true", "+num_repeats=40",
             "+num_samples_in_parallel=64"],
            cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = read_jsonl(workdir / "results/out.jsonl")
        assert len(out) == 200 and all(o["reward"] == 1.0 for o in out)
    finally:
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(30)


def test_kill_9_of_a_replica_mid_collection_is_retried_exactly_once_and_reported(workdir: Path) -> None:
    port = free_port()
    run = NgRun([f"+config_paths=[{SCRIPTED},{COUNTER}]", f"+head_server.port={port}", REPLICAS,
                 "++policy_model.responses_api_models.scripted_model.delay_s=0.05"], workdir)
    try:
        run.wait_ready()
        counter_input(workdir)
        proc = subprocess.Popen(
            ["ng_collect_rollouts", f"+head_server.port={port}", "+input_jsonl_fpath=results/in.jsonl",
             "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true", "+num_repeats=60",
             "+num_samples_in_parallel=48"],
            cwd=workdir, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        out = workdir / "results/out.jsonl"
        deadline = time.monotonic() + 120
        while (not out.exists() or out.read_text().count("\n") < 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = next(r for r in replicas_of(run.head_url) if r["replica"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)
        assert out.read_text().count("\n") < 300, "the kill must land mid-collection"
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout + stderr
        rows = read_jsonl(out)
        keys = sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows)
        assert keys == [(t, r) for t in range(5) for r in range(60)]  # each exactly once
        assert all(r["reward"] == 1.0 for r in rows)  # a lost episode is never scored
        # ... but its attempt is recorded: retried lines in the failures file, none a failed rollout
        recorded = read_jsonl(workdir / "results/out_failures.jsonl")
        assert recorded and all(r["retried"] is True and r["attempt"] >= 1 for r in recorded)
        assert "replica_lost" in {r["kind"] for r in recorded}
        assert f"{len(recorded)} failed attempt(s) were retried" in stdout
        # the replica was restarted and rejoined; the launcher said which one died, with its log
        deadline = time.monotonic() + 60
        while "restarted and answering" not in run.output and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"Server '{NAME}#1' (replica 1 of 3" in run.output
        assert "exited with code -9" in run.output and "last log lines" in run.output
        again = next(r for r in replicas_of(run.head_url) if r["replica"] == 1)
        assert again["status"] == "running" and again["pid"] != victim["pid"] and again["restarts"] == 1
        # an episode bound to the killed process is lost on the restarted one, not silently fresh
        old = asyncio.run(_seed_on_replica_then_kill(port, run.head_url))
        assert old
    finally:
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(30)


async def _seed_on_replica_then_kill(port: int, head: str) -> bool:
    client = await ServerClient.from_head_server(HeadServerConfig(port=port))
    try:
        for _ in range(12):
            seeded = await client.post(NAME, "/seed_session", json={"initial_count": 0, "expected_count": 1})
            cookies = dict(seeded.cookies)
            if replica_of(next(v for k, v in cookies.items() if k.endswith(NAME))) == 2:
                break
        else:
            return False
        pid = next(r for r in replicas_of(head) if r["replica"] == 2)["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # while down: refused; once restarted: 503 replica_lost
            try:
                await client.post(NAME, "/increment_counter", json={"count": 1}, cookies=cookies)
            except ReplicaLost as e:
                if "restarted" in str(e):
                    return True
            await asyncio.sleep(0.3)
        return False
    finally:
        await client.aclose()
