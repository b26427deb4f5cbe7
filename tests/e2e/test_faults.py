"""Fault injection with real processes: kills, dead and flaky servers, deadlines, bad input, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import SECRET, alive, command_env, free_port, wait_http
from tests.e2e.procs import NgRun, read_jsonl

pytestmark = pytest.mark.slow

SCRIPTED = "responses_api_models/scripted_model/configs/scripted_model.yaml"
OPENAI = "responses_api_models/openai_model/configs/openai_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
MULTI = "resources_servers/example_multi_step/configs/example_multi_step.yaml"
AGENTS = {"single": "example_single_tool_call_simple_agent", "multi": "example_multi_step_simple_agent"}



def final_failures(workdir: Path) -> list[dict[str, Any]]:
    """The rollouts that failed (the failures file also records each retried attempt, "retried": true)."""
    path = workdir / "results/out_failures.jsonl"
    return [f for f in read_jsonl(path) if not f.get("retried")] if path.exists() else []

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
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(30)
    return pids


Deploy = Callable[..., tuple[NgRun, int]]


@pytest.fixture
def deploy(workdir: Path) -> Iterator[Deploy]:
    """``deploy(*configs, extra=(...))``: ng_run started in ``workdir`` and ready; (run, head port).
    Every deployment a test starts is stopped when it ends, pass or fail."""
    runs: list[NgRun] = []

    def _deploy(*configs: str, extra: tuple[str, ...] = ()) -> tuple[NgRun, int]:
        run, port = start(workdir, *configs, extra=extra)
        runs.append(run)
        return run, port

    yield _deploy
    for run in runs:
        stop(run)


@pytest.fixture
def openai_api(workdir: Path) -> Iterator[Callable[..., int]]:
    """``openai_api(*flags)``: a scripted OpenAI-compatible API as its own process, named as the
    policy in env.yaml; returns its port. Stopped when the test ends."""
    procs: list[subprocess.Popen[bytes]] = []

    def _start(*flags: str) -> int:
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ngym.devkit.testing.scripted_openai", "--port", str(port), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        (workdir / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{port}/v1\npolicy_api_key: k\npolicy_model_name: m\n")
        return port

    yield _start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def collect_in_background(workdir: Path, head_port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ng_collect_rollouts", f"+head_server.port={head_port}", "+input_jsonl_fpath=results/in.jsonl",
         "+output_jsonl_fpath=results/out.jsonl", "+no_progress=true", *extra],
        cwd=workdir, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_lines(path: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (not path.exists() or path.read_text().count("\n") < count) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists() and path.read_text().count("\n") >= count, f"{path} never reached {count} lines"


def test_kill_9_of_the_collector_then_resume_is_exactly_once(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, MULTI, extra=("++policy_model.responses_api_models.scripted_model.delay_s=0.05",))
    proc = collect_in_background(workdir, port, "+num_repeats=8", "+num_samples_in_parallel=4")
    out = workdir / "results/out.jsonl"
    wait_for_lines(out, 10)
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


def test_flaky_model_500_and_429_is_retried_to_a_correct_result(workdir: Path, deploy: Deploy, openai_api: Callable[..., int]) -> None:
    api_port = openai_api("--fail-every", "3")
    mixed_input(workdir)
    _, port = deploy(OPENAI, SINGLE, MULTI)
    done = collect(workdir, port)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = httpx.get(f"http://127.0.0.1:{api_port}/stats").json()
    assert stats["failed"] >= 5  # failures really happened, and were absorbed by retries
    outputs = read_jsonl(workdir / "results/out.jsonl")
    assert len(outputs) == 10 and all(o["reward"] == 1.0 for o in outputs)
    # no rollout failed (attempts the collector itself retried, if any, are lines marked "retried")
    assert final_failures(workdir) == []


def test_dead_model_server_stops_the_run_with_its_name_and_url(workdir: Path, deploy: Deploy) -> None:
    dead = free_port()  # nothing listens there
    (workdir / "env.yaml").write_text(f"policy_base_url: http://127.0.0.1:{dead}/v1\npolicy_api_key: k\npolicy_model_name: m\n")
    mixed_input(workdir)
    _, port = deploy(OPENAI, SINGLE, MULTI)
    t0 = time.monotonic()
    done = collect(workdir, port, "+num_repeats=20", "+max_consecutive_failures=8", "+num_samples_in_parallel=4", timeout=120)
    assert time.monotonic() - t0 < 100
    assert done.returncode == 1
    assert "stopped after" in done.stderr and "+resume=true" in done.stderr
    assert f"127.0.0.1:{dead}" in done.stderr  # the dead upstream, by URL
    failures = final_failures(workdir)
    assert failures and {f["kind"] for f in failures} == {"model_error"}
    assert all(f["attempts"] >= 1 and "error" in f and "agent_ref" in f for f in failures)
    assert read_jsonl(workdir / "results/out.jsonl") == []  # never written as reward 0


def test_killed_server_gives_typed_failures_then_resume_completes(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    run, port = deploy(SCRIPTED, SINGLE, MULTI, extra=(
        "++policy_model.responses_api_models.scripted_model.delay_s=0.05", "+max_restarts=0"))
    instances = httpx.get(f"http://127.0.0.1:{port}/server_instances").json()
    victim = next(i for i in instances if i["name"] == "example_multi_step_resources_server")
    proc = collect_in_background(workdir, port, "+num_repeats=6", "+num_samples_in_parallel=4", "+max_attempts=2")
    out = workdir / "results/out.jsonl"
    wait_for_lines(out, 6)
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    run.proc.wait(30)  # with +max_restarts=0, ng_run notices the dead server and stops the deployment
    assert "'example_multi_step_resources_server'" in run.output and "exited" in run.output
    assert proc.returncode == 1
    failures = final_failures(workdir)
    assert failures and {f["kind"] for f in failures} <= {"resources_error", "agent_unreachable", "model_error"}
    assert all(o["reward"] == 1.0 for o in read_jsonl(out))  # no failure became a reward
    # restart the deployment, resume: every (task, rollout) exactly once
    _, port2 = deploy(SCRIPTED, SINGLE, MULTI)
    done = collect(workdir, port2, "+num_repeats=6", "+resume=true")
    assert done.returncode == 0, done.stderr
    got = keys(out)
    assert sorted(got) == [(t, r) for t in range(10) for r in range(6)]


def test_slow_model_past_the_rollout_deadline_is_a_timeout_failure(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, extra=("++policy_model.responses_api_models.scripted_model.delay_s=5",))
    t0 = time.monotonic()
    done = collect(workdir, port, "+limit=2", "+agent_name=x", "+rollout_timeout_s=0.5", "+max_attempts=2")
    assert time.monotonic() - t0 < 30
    assert done.returncode == 1
    failures = final_failures(workdir)
    assert [f["kind"] for f in failures] == ["timeout", "timeout"]
    assert all(f["attempts"] == 2 for f in failures)
    assert "rollout deadline" in failures[0]["error"]


def test_bad_input_is_reported_by_line_and_nothing_is_sent(workdir: Path, deploy: Deploy, openai_api: Callable[..., int]) -> None:
    api_port = openai_api()
    path = mixed_input(workdir)
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]  # malformed JSON
    lines[7] = lines[7].replace(AGENTS["multi"], "no_such_agent")
    path.write_text("\n".join(lines) + "\n")
    _, port = deploy(OPENAI, SINGLE, MULTI)
    done = collect(workdir, port)
    assert done.returncode == 2
    assert "in.jsonl:4:" in done.stderr and "in.jsonl:8:" in done.stderr and "no_such_agent" in done.stderr
    assert "Traceback" not in done.stderr
    assert httpx.get(f"http://127.0.0.1:{api_port}/stats").json()["total"] == 0
    assert not (workdir / "results/out.jsonl").exists()


def test_rows_missing_their_environments_task_fields_are_bad_input_up_front(workdir: Path, deploy: Deploy, openai_api: Callable[..., int]) -> None:
    """Issue 15: a row without the task fields its environment declares (GET /spec) is reported by
    file:line and field before anything is sent, not after a full episode as a verifier_error;
    rows of an environment without task fields are not held against it."""
    api_port = openai_api()
    path = mixed_input(workdir)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    multi = [i for i, r in enumerate(rows) if r["agent_ref"]["name"] == AGENTS["multi"]]
    del rows[multi[1]]["expected_synonym_values"]
    rows[multi[3]]["expected_synonym_values"] = "not a list"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, port = deploy(OPENAI, SINGLE, MULTI)
    done = collect(workdir, port)
    assert done.returncode == 2, done.stderr
    assert f"in.jsonl:{multi[1] + 1}: missing task field 'expected_synonym_values'" in done.stderr
    assert f"in.jsonl:{multi[3] + 1}: task field 'expected_synonym_values' must be array" in done.stderr
    assert "bad_input" in done.stderr and "example_multi_step" in done.stderr and "Traceback" not in done.stderr
    assert httpx.get(f"http://127.0.0.1:{api_port}/stats").json()["total"] == 0
    assert not (workdir / "results/out.jsonl").exists()


def test_sigterm_of_background_ng_run_leaves_no_process(workdir: Path) -> None:
    run, port = start(workdir, SCRIPTED, SINGLE, MULTI)
    pids = stop(run)
    assert len(pids) == 5 and run.proc.returncode in (0, 130)
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == []


def test_second_ng_run_on_the_same_port_is_a_clear_error(workdir: Path, deploy: Deploy) -> None:
    _, port = deploy(SCRIPTED, SINGLE)
    second = subprocess.run(["ng_run", f"+config_paths=[{SCRIPTED},{SINGLE}]", f"+head_server.port={port}"],
                            cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "already in use" in second.stderr and "ng_status" in second.stderr
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # the first one is untouched


def test_non_loopback_servers_require_the_deployment_token(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    run, port = deploy(SCRIPTED, SINGLE, MULTI, extra=("+default_host=0.0.0.0",))
    instances = httpx.get(f"http://127.0.0.1:{port}/server_instances")
    assert instances.status_code == 401
    agent_port = next(int(line.split(":")[-1].split()[0]) for line in run.lines if line.startswith(AGENTS["single"]))
    refused = httpx.post(f"http://127.0.0.1:{agent_port}/run", json={})
    assert refused.status_code == 401
    done = collect(workdir, port)  # reads the token file ng_run wrote
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(workdir / "results/out.jsonl")) == 10


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


# ---- issue 15: nothing a typo, a second run or a bad reply can destroy -----------------------

DELAYED = "++policy_model.responses_api_models.scripted_model.delay_s={}"


def test_a_typo_a_rerun_or_output_equal_to_input_destroys_nothing(workdir: Path, deploy: Deploy) -> None:
    path = mixed_input(workdir)
    dataset = path.read_text()
    _, port = deploy(SCRIPTED, SINGLE, MULTI)
    assert collect(workdir, port, "+num_repeats=3").returncode == 0
    out = workdir / "results/out.jsonl"
    results = out.read_text()
    assert results.count("\n") == 30
    for mistake in (("+resum=true",), ("+resume_from_cahce=true",), ()):  # typos, and a plain re-run
        done = collect(workdir, port, *mistake)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert out.read_text() == results
    assert "did you mean +resume_from_cache?" in collect(workdir, port, "+resume_from_cahce=true").stderr
    same = subprocess.run(
        ["ng_collect_rollouts", f"+head_server.port={port}", "+input_jsonl_fpath=results/in.jsonl",
         "+output_jsonl_fpath=results/in.jsonl", "+overwrite=true"],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=60,
    )
    assert same.returncode == 2 and "would be overwritten" in same.stderr
    assert path.read_text() == dataset
    again = collect(workdir, port, "+overwrite=true")
    assert again.returncode == 0, again.stderr
    assert out.read_text().count("\n") == 10


def test_a_second_writer_is_refused_naming_the_first(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, MULTI, extra=(DELAYED.format(0.1),))
    first = collect_in_background(workdir, port, "+num_repeats=6", "+num_samples_in_parallel=2")
    out = workdir / "results/out.jsonl"
    wait_for_lines(out, 2)
    second = collect(workdir, port, "+num_repeats=6", "+resume=true")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"pid {first.pid}" in second.stderr and "ng_collect_rollouts" in second.stderr
    stdout, stderr = first.communicate(timeout=240)
    assert first.returncode == 0, stderr
    got = keys(out)
    assert sorted(got) == [(t, r) for t in range(10) for r in range(6)]  # no duplicate, no interleaved line
    # the kernel releases the lock when its holder dies, whatever way: kill -9, then a resume may write
    killed = collect_in_background(workdir, port, "+num_repeats=7", "+resume=true")
    wait_for_lines(out, 61)
    killed.kill()
    killed.wait()
    done = collect(workdir, port, "+num_repeats=7", "+resume=true")
    assert done.returncode == 0, done.stderr
    assert sorted(keys(out)) == [(t, r) for t in range(10) for r in range(7)]


def test_a_corrupt_line_is_set_aside_by_number_and_resume_completes(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, MULTI)
    assert collect(workdir, port, "+num_repeats=2").returncode == 0
    out = workdir / "results/out.jsonl"
    lines = out.read_text().splitlines()
    bad = lines[3][: len(lines[3]) // 2] + "\x00" + lines[9]  # two writers interleaved (a NUL: never valid JSON)
    lines[3] = bad
    out.write_text("\n".join(lines) + "\n")
    (workdir / "results/out_failures.jsonl").write_text('{"kind": "model_error"}\n')
    done = collect(workdir, port, "+num_repeats=2", "+resume=true")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "line 4" in done.stderr and "out_set_aside.jsonl" in done.stderr
    assert sorted(keys(out)) == [(t, r) for t in range(10) for r in range(2)]
    (aside,) = read_jsonl(workdir / "results/out_set_aside.jsonl")
    assert aside["line"] == 4 and aside["text"] == bad
    assert (workdir / "results/out_failures_previous.jsonl").read_text() == '{"kind": "model_error"}\n'


def test_resume_after_the_input_changed_runs_what_changed_and_keeps_the_rest(workdir: Path, deploy: Deploy) -> None:
    path = mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, MULTI)
    assert collect(workdir, port).returncode == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["responses_create_params"]["temperature"] = 0.5  # changed
    del rows[4]  # removed
    rows.insert(0, json.loads(json.dumps(rows[2])) | {"note": "added"})  # added, first: every index shifts
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = collect(workdir, port, "+resume=true")
    assert done.returncode == 0, done.stderr
    assert "2 rollouts written" in done.stdout and "(8 already done)" in done.stdout
    assert "changed or are gone" in done.stderr and "new task index" in done.stderr
    out = read_jsonl(workdir / "results/out.jsonl")
    materialized = {r["_ng_task_index"]: r for r in read_jsonl(workdir / "results/out_materialized_inputs.jsonl")}
    assert sorted(keys(workdir / "results/out.jsonl")) == [(t, 0) for t in range(10)]
    for rollout in out:  # every task index names a rollout of the row it now has
        assert rollout["_ng_input_fp"] == materialized[rollout["_ng_task_index"]]["_ng_input_fp"]
    assert len(read_jsonl(workdir / "results/out_set_aside.jsonl")) == 2  # the changed and the removed row's


def child_environment(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")


def test_only_model_servers_receive_the_policy_key(workdir: Path, deploy: Deploy) -> None:
    _, port = deploy(OPENAI, SINGLE)
    instances = {i["name"]: i["pid"] for i in httpx.get(f"http://127.0.0.1:{port}/server_instances").json()}
    assert SECRET in child_environment(instances["policy_model"])  # the one that calls the API needs it
    for name in ("example_single_tool_call", AGENTS["single"]):
        assert SECRET not in child_environment(instances[name]), name


def test_a_key_in_a_form_the_model_server_refuses_is_never_printed(workdir: Path) -> None:
    (workdir / "env.yaml").write_text(
        f"policy_base_url: http://127.0.0.1:9/v1\npolicy_api_key: {{primary: {SECRET}}}\npolicy_model_name: m\n")
    done = subprocess.run(["ng_run", f"+config_paths=[{OPENAI},{SINGLE}]", f"+head_server.port={free_port()}"],
                          cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "policy_model" in done.stderr + done.stdout and "openai_api_key" in done.stderr + done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_a_crashed_server_is_restarted_and_the_other_environments_keep_serving(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    run, port = deploy(SCRIPTED, SINGLE, MULTI, extra=("+restart_backoff_s=0.2",))
    instances = {i["name"]: i for i in httpx.get(f"http://127.0.0.1:{port}/server_instances").json()}
    victim = instances["example_multi_step_resources_server"]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarted and answering" not in run.output and time.monotonic() < deadline:
        assert run.proc.poll() is None, run.output
        time.sleep(0.1)
    assert "'example_multi_step_resources_server'" in run.output and "exited with code -9" in run.output
    assert "restart 1 of 3" in run.output
    after = {i["name"]: i for i in httpx.get(f"http://127.0.0.1:{port}/server_instances").json()}
    assert after["example_multi_step_resources_server"]["pid"] != victim["pid"]
    assert after["example_multi_step_resources_server"]["restarts"] == 1
    assert after["example_single_tool_call"]["pid"] == instances["example_single_tool_call"]["pid"]  # untouched
    done = collect(workdir, port)
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(workdir / "results/out.jsonl")) == 10


def test_ng_run_restarts_at_once_on_the_ports_it_just_released(workdir: Path) -> None:
    head, tool = free_port(), free_port()
    fixed = (f"+head_server.port={head}", f"++example_single_tool_call.resources_servers.example_single_tool_call.port={tool}")
    mixed_input(workdir)
    for attempt in range(2):
        run = NgRun([f"+config_paths=[{SCRIPTED},{SINGLE}]", *fixed], workdir)
        try:
            run.wait_ready()
            done = collect(workdir, head, "+limit=5", "+overwrite=true")
            assert done.returncode == 0, done.stderr
        finally:
            run.proc.send_signal(signal.SIGINT)
            run.proc.wait(30)
        assert "already in use" not in run.output, (attempt, run.output)


def test_a_stalled_model_is_a_timeout_that_names_the_model_server(workdir: Path, deploy: Deploy) -> None:
    mixed_input(workdir)
    _, port = deploy(SCRIPTED, SINGLE, extra=(
        DELAYED.format(30), f"++{AGENTS['single']}.responses_api_agents.simple_agent.model_timeout_s=1"))
    t0 = time.monotonic()
    done = collect(workdir, port, "+limit=1", "+max_attempts=3")
    assert time.monotonic() - t0 < 25  # 2 attempts × 1 s, not 3 × the model's stall
    assert done.returncode == 1
    (failure,) = final_failures(workdir)
    assert failure["kind"] == "timeout" and failure["attempts"] == 2
    assert "model server 'policy_model'" in failure["error"] and "model_timeout_s=1" in failure["error"]


def test_the_viewer_answers_only_to_its_loopback_host_names(workdir: Path) -> None:
    rollouts = workdir / "results/view.jsonl"
    rollouts.write_text(json.dumps({"reward": 1.0, "agent_ref": {"name": "a"}, "_ng_task_index": 0, "_ng_rollout_index": 0}) + "\n")
    port = free_port()
    viewer = subprocess.Popen(["ng_viewer", f"+jsonl_fpath={rollouts}", f"+port={port}"], cwd=workdir, env=command_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}).status_code == 200, host
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
            assert httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}).status_code == 421, host
    finally:
        viewer.terminate()
        viewer.wait(10)
