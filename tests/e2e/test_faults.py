"""Fault injection with real processes: kills, dead and flaky servers, deadlines, bad input, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import alive, command_env, free_port, wait_http
from tests.e2e.procs import NgRun, read_jsonl

pytestmark = pytest.mark.slow

SCRIPTED = "responses_api_models/scripted_model/configs/scripted_model.yaml"
OPENAI = "responses_api_models/openai_model/configs/openai_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
MULTI = "resources_servers/example_multi_step/configs/example_multi_step.yaml"
AGENTS = {"single": "example_single_tool_call_simple_agent", "multi": "example_multi_step_simple_agent"}


def mixed_input(workdir: Path) -> Path:
    rows = []
    for env, agent in (("example_single_tool_call", AGENTS["single"]), ("example_multi_step", AGENTS["multi"])):
        for line in (workdir / "resources_servers" / env / "data/example.jsonl").read_text().splitlines():
            rows.append(json.loads(line) | {"agent_ref": {"name": agent}})
    path = workdir / "results/in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def collect(workdir: Path, head_port: int, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ng_collect_rollouts", f"+head_server.port={head_port}", "+input_jsonl_fpath=results/in.jsonl",
         "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true", *extra],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=timeout,
    )


def keys(path: Path) -> list[tuple[int, int]]:
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in read_jsonl(path)]


def start(workdir: Path, *configs: str, extra: tuple[str, ...] = ()) -> tuple[NgRun, int]:
    port = free_port()
    run = NgRun([f"+config_paths=[{','.join(configs)}]", f"+head_server.port={port}", *extra], workdir)
    run.wait_ready()
    return run, port


def stop(run: NgRun) -> list[int]:
    """SIGTERM ng_run (as a service manager would); return the server pids it had."""
    try:
        answer = httpx.get(run.head_url + "/server_instances")
        pids = [i["pid"] for i in answer.json()] if answer.status_code == 200 else []
    except httpx.HTTPError:
        pids = []
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(30)
    return pids


def test_kill_9_of_the_collector_then_resume_is_exactly_once(workdir: Path) -> None:
    mixed_input(workdir)
    run, port = start(workdir, SCRIPTED, SINGLE, MULTI, extra=("++policy_model.responses_api_models.scripted_model.delay_s=0.05",))
    try:
        proc = subprocess.Popen(
            ["ng_collect_rollouts", f"+head_server.port={port}", "+input_jsonl_fpath=results/in.jsonl",
             "+output_jsonl_fpath=results/out.jsonl", "+num_repeats=8", "+num_samples_in_parallel=4", "+no_progress=true"],
            cwd=workdir, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        out = workdir / "results/out.jsonl"
        deadline = time.monotonic() + 60
        while (not out.exists() or out.read_text().count("\n") < 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        before = keys(out)
        assert 10 <= len(before) < 80, "the kill must land mid-run"
        with out.open("a") as f:  # what a kill in the middle of a write leaves
            f.write('{"responses_create_params": {"input": "half a li')
        done = collect(workdir, port, "+num_repeats=8", "+resume=true")
        assert done.returncode == 0, done.stderr
        after = keys(out)
        assert len(after) == len(set(after)) == 80
        assert sorted(after) == [(t, r) for t in range(10) for r in range(8)]
        assert after[: len(before)] == before  # what was there is kept, in place
        assert f"({len(before)} already done)" in done.stdout
    finally:
        stop(run)


def test_flaky_model_500_and_429_is_retried_to_a_correct_result(workdir: Path) -> None:
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "ngym.devkit.testing.scripted_openai", "--port", str(api_port), "--fail-every", "3"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{api_port}/v1/models")
        (workdir / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{api_port}/v1\npolicy_api_key: k\npolicy_model_name: m\n")
        mixed_input(workdir)
        run, port = start(workdir, OPENAI, SINGLE, MULTI)
        try:
            done = collect(workdir, port)
            assert done.returncode == 0, done.stdout + done.stderr
            stats = httpx.get(f"http://127.0.0.1:{api_port}/stats").json()
            assert stats["failed"] >= 5  # failures really happened, and were absorbed by retries
            outputs = read_jsonl(workdir / "results/out.jsonl")
            assert len(outputs) == 10 and all(o["reward"] == 1.0 for o in outputs)
            assert not (workdir / "results/out_failures.jsonl").exists()
        finally:
            stop(run)
    finally:
        api.terminate()
        api.wait(10)


def test_dead_model_server_stops_the_run_with_its_name_and_url(workdir: Path) -> None:
    dead = free_port()  # nothing listens there
    (workdir / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{dead}/v1\npolicy_api_key: k\npolicy_model_name: m\n")
    mixed_input(workdir)
    run, port = start(workdir, OPENAI, SINGLE, MULTI)
    try:
        t0 = time.monotonic()
        done = collect(workdir, port, "+num_repeats=20", "+max_consecutive_failures=8", "+num_samples_in_parallel=4", timeout=120)
        assert time.monotonic() - t0 < 100
        assert done.returncode == 1
        assert "stopped after" in done.stderr and "+resume=true" in done.stderr
        assert f"127.0.0.1:{dead}" in done.stderr  # the dead upstream, by URL
        failures = read_jsonl(workdir / "results/out_failures.jsonl")
        assert failures and {f["kind"] for f in failures} == {"model_error"}
        assert all(f["attempts"] >= 1 and "error" in f and "agent_ref" in f for f in failures)
        assert read_jsonl(workdir / "results/out.jsonl") == []  # never written as reward 0
    finally:
        stop(run)


def test_killed_server_gives_typed_failures_then_resume_completes(workdir: Path) -> None:
    mixed_input(workdir)
    run, port = start(workdir, SCRIPTED, SINGLE, MULTI, extra=("++policy_model.responses_api_models.scripted_model.delay_s=0.05",))
    instances = httpx.get(f"http://127.0.0.1:{port}/server_instances").json()
    victim = next(i for i in instances if i["name"] == "example_multi_step_resources_server")
    proc = subprocess.Popen(
        ["ng_collect_rollouts", f"+head_server.port={port}", "+input_jsonl_fpath=results/in.jsonl",
         "+output_jsonl_fpath=results/out.jsonl", "+num_repeats=6", "+num_samples_in_parallel=4", "+no_progress=true",
         "+max_attempts=2"],
        cwd=workdir, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out = workdir / "results/out.jsonl"
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_text().count("\n") < 6) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    run.proc.wait(30)  # ng_run notices the dead server and stops the deployment
    assert "'example_multi_step_resources_server'" in run.output and "exited" in run.output
    assert proc.returncode == 1
    failures = read_jsonl(workdir / "results/out_failures.jsonl")
    assert failures and {f["kind"] for f in failures} <= {"resources_error", "agent_unreachable", "model_error"}
    assert all(o["reward"] == 1.0 for o in read_jsonl(out))  # no failure became a reward
    # restart the deployment, resume: every (task, rollout) exactly once
    run2, port2 = start(workdir, SCRIPTED, SINGLE, MULTI)
    try:
        done = collect(workdir, port2, "+num_repeats=6", "+resume=true")
        assert done.returncode == 0, done.stderr
        got = keys(out)
        assert sorted(got) == [(t, r) for t in range(10) for r in range(6)]
    finally:
        stop(run2)


def test_slow_model_past_the_rollout_deadline_is_a_timeout_failure(workdir: Path) -> None:
    mixed_input(workdir)
    run, port = start(workdir, SCRIPTED, SINGLE, extra=("++policy_model.responses_api_models.scripted_model.delay_s=5",))
    try:
        t0 = time.monotonic()
        done = collect(workdir, port, "+limit=2", "+agent_name=x", "+rollout_timeout_s=0.5", "+max_attempts=2")
        assert time.monotonic() - t0 < 30
        assert done.returncode == 1
        failures = read_jsonl(workdir / "results/out_failures.jsonl")
        assert [f["kind"] for f in failures] == ["timeout", "timeout"]
        assert all(f["attempts"] == 2 for f in failures)
        assert "rollout deadline" in failures[0]["error"]
    finally:
        stop(run)


def test_bad_input_is_reported_by_line_and_nothing_is_sent(workdir: Path) -> None:
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "ngym.devkit.testing.scripted_openai", "--port", str(api_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{api_port}/v1/models")
        (workdir / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{api_port}/v1\npolicy_api_key: k\npolicy_model_name: m\n")
        path = mixed_input(workdir)
        lines = path.read_text().splitlines()
        lines[3] = lines[3][:-5]  # malformed JSON
        lines[7] = lines[7].replace(AGENTS["multi"], "no_such_agent")
        path.write_text("\n".join(lines) + "\n")
        run, port = start(workdir, OPENAI, SINGLE, MULTI)
        try:
            done = collect(workdir, port)
            assert done.returncode == 2
            assert "in.jsonl:4:" in done.stderr and "in.jsonl:8:" in done.stderr and "no_such_agent" in done.stderr
            assert "Traceback" not in done.stderr
            assert httpx.get(f"http://127.0.0.1:{api_port}/stats").json()["total"] == 0
            assert not (workdir / "results/out.jsonl").exists()
        finally:
            stop(run)
    finally:
        api.terminate()
        api.wait(10)


def test_sigterm_of_background_ng_run_leaves_no_process(workdir: Path) -> None:
    run, port = start(workdir, SCRIPTED, SINGLE, MULTI)
    pids = stop(run)
    assert len(pids) == 5 and run.proc.returncode in (0, 130)
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == []


def test_second_ng_run_on_the_same_port_is_a_clear_error(workdir: Path) -> None:
    run, port = start(workdir, SCRIPTED, SINGLE)
    try:
        second = subprocess.run(["ng_run", f"+config_paths=[{SCRIPTED},{SINGLE}]", f"+head_server.port={port}"],
                                cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "already in use" in second.stderr and "ng_status" in second.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # the first one is untouched
    finally:
        stop(run)


def test_non_loopback_servers_require_the_deployment_token(workdir: Path) -> None:
    mixed_input(workdir)
    run, port = start(workdir, SCRIPTED, SINGLE, MULTI, extra=("+default_host=0.0.0.0",))
    try:
        instances = httpx.get(f"http://127.0.0.1:{port}/server_instances")
        assert instances.status_code == 401
        agent_port = next(int(line.split(":")[-1].split()[0]) for line in run.lines if line.startswith(AGENTS["single"]))
        refused = httpx.post(f"http://127.0.0.1:{agent_port}/run", json={})
        assert refused.status_code == 401
        done = collect(workdir, port)  # reads the token file ng_run wrote
        assert done.returncode == 0, done.stderr
        assert len(read_jsonl(workdir / "results/out.jsonl")) == 10
    finally:
        stop(run)


@pytest.mark.parametrize("colocate", [False, True], ids=["process-per-server", "colocated"])
def test_kill_9_of_ng_run_takes_its_servers_with_it(workdir: Path, colocate: bool) -> None:
    run, port = start(workdir, SCRIPTED, SINGLE, extra=("+colocate=true",) if colocate else ())
    pids = [i["pid"] for i in httpx.get(f"http://127.0.0.1:{port}/server_instances").json()]
    run.proc.kill()
    run.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if alive(p)] == []
