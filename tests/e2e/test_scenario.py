"""The multi-environment scenario of the README, verbatim, with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import SECRET, alive, command_env, free_port
from tests.e2e.procs import NgRun, read_jsonl

pytestmark = pytest.mark.slow

MODEL = "responses_api_models/openai_model/configs/openai_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
MULTI = "resources_servers/example_multi_step/configs/example_multi_step.yaml"
COUNTER = "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml"

SCENARIO = r"""
jq -c '. + {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}' resources_servers/example_single_tool_call/data/example.jsonl >> results/test_multiverifier_input.jsonl
jq -c '. + {"agent_ref": {"name": "example_multi_step_simple_agent"}}' resources_servers/example_multi_step/data/example.jsonl >> results/test_multiverifier_input.jsonl
ng_collect_rollouts +input_jsonl_fpath=results/test_multiverifier_input.jsonl +output_jsonl_fpath=results/test_multiverifier_outputs.jsonl
"""


@pytest.mark.parametrize("colocate", [False, True], ids=["process-per-server", "colocated"])
def test_multi_environment_scenario_verbatim(workdir: Path, colocate: bool) -> None:
    # colocated: every server in one process, calling each other without sockets, yet each one
    # still answers over HTTP on its own port (the openai SDK checks below)
    run = NgRun([f"+config_paths=[{MODEL},{SINGLE},{MULTI}]", *(["+colocate=true"] if colocate else [])], workdir)
    try:
        run.wait_ready()
        instances = httpx.get("http://127.0.0.1:11000/server_instances").json()
        pids = [i["pid"] for i in instances]
        assert len(set(pids)) == (1 if colocate else 5)
        assert {i["name"] for i in instances} == {
            "policy_model", "example_single_tool_call", "example_single_tool_call_simple_agent",
            "example_multi_step_resources_server", "example_multi_step_simple_agent",
        }
        done = subprocess.run(["bash", "-ec", SCENARIO], cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

        inputs = read_jsonl(workdir / "results/test_multiverifier_input.jsonl")
        outputs = read_jsonl(workdir / "results/test_multiverifier_outputs.jsonl")
        assert len(inputs) == len(outputs) == 10
        by_task = {o["_ng_task_index"]: o for o in outputs}
        assert sorted(by_task) == list(range(10))
        for index, row in enumerate(inputs):
            out = by_task[index]
            assert out["agent_ref"]["name"] == row["agent_ref"]["name"]
            assert out["reward"] == 1.0
            tools = {c["name"] for c in out["response"]["output"] if c["type"] == "function_call"}
            if row["agent_ref"]["name"] == "example_multi_step_simple_agent":
                assert tools == {"get_synonym_value", "extract_synonym_values"}
                assert out["parsed_synonym_values"] == [711, 407]
            else:
                assert tools <= {"get_weather"}
        assert "example_multi_step_simple_agent" in done.stdout and "1.000" in done.stdout

        # the openai SDK talks to our model server and to an agent
        urls = {i["name"]: i["url"] for i in instances}
        sdk = openai.OpenAI(base_url=urls["policy_model"] + "/v1", api_key="unused")
        reply = sdk.responses.create(model="x", input="what's it like in sf?", tools=[{
            "type": "function", "name": "get_weather", "strict": True,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
        }])
        assert reply.output[0].type == "function_call" and reply.output[0].name == "get_weather"
        agent = openai.OpenAI(base_url=urls["example_single_tool_call_simple_agent"] + "/v1", api_key="unused")
        episode = agent.responses.create(model="x", input="what's it like in sf?", tools=reply.tools)
        assert [i.type for i in episode.output] == ["function_call", "function_call_output", "message"]
        assert "cold" in episode.output_text

        # secrets never leak into files, logs or the head server's config
        config = httpx.get("http://127.0.0.1:11000/global_config_dict_yaml").text
        for text in [config, run.output, done.stdout, done.stderr] + [p.read_text() for p in (workdir / "results").iterdir()]:
            assert SECRET not in text
    finally:
        run.proc.send_signal(signal.SIGINT)
        code = run.proc.wait(30)
    assert code in (0, 130)
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == []


@pytest.mark.parametrize(
    ("env_config", "agent", "typed_ref", "colocate"),
    [
        (SINGLE, "example_single_tool_call_simple_agent", True, False),
        (MULTI, "example_multi_step_simple_agent", False, False),
        (COUNTER, "example_session_state_mgmt_simple_agent", True, False),
        (COUNTER, "example_session_state_mgmt_simple_agent", True, True),  # per-episode state without sockets
    ],
)
def test_each_environment_alone_one_shot(workdir: Path, env_config: str, agent: str, typed_ref: bool, colocate: bool) -> None:
    data = Path(env_config).parent.parent / "data" / "example.jsonl"
    ref = {"type": "responses_api_agents", "name": agent} if typed_ref else {"name": agent}
    rows = [json.loads(line) | {"agent_ref": ref} for line in (workdir / data).read_text().splitlines()]
    (workdir / "results/in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        ["ng_collect_rollouts", f"+config_paths=[{MODEL},{env_config}]", f"+head_server.port={free_port()}",
         "+input_jsonl_fpath=results/in.jsonl", "+output_jsonl_fpath=results/out.jsonl", "+num_repeats=2",
         *(["+colocate=true"] if colocate else [])],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = read_jsonl(workdir / "results/out.jsonl")
    assert len(outputs) == 10
    assert sorted((o["_ng_task_index"], o["_ng_rollout_index"]) for o in outputs) == [(t, r) for t in range(5) for r in range(2)]
    assert all(o["reward"] == 1.0 and o["agent_ref"]["name"] == agent for o in outputs)
    metrics = json.loads((workdir / "results/out_agent_metrics.json").read_text())
    assert metrics[0]["agent_ref"]["name"] == agent and metrics[0]["mean/reward"] == 1.0


def test_port_in_use_is_a_clear_error_and_starts_nothing(workdir: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        done = subprocess.run(
            ["ng_run", f"+config_paths=[{MODEL},{SINGLE}]", f"+head_server.port={port}"],
            cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 2
    assert f"Port {port}" in done.stderr and "already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_dies_is_reported_by_name(workdir: Path) -> None:
    broken = workdir / "broken.yaml"
    broken.write_text(
        "example_session_state_mgmt_resources_server:\n  resources_servers:\n    example_session_state_mgmt:\n"
        "      session_ttl_s: forever\n"
    )
    done = subprocess.run(
        ["ng_run", f"+config_paths=[{MODEL},{COUNTER},{broken}]", f"+head_server.port={free_port()}"],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "'example_session_state_mgmt_resources_server'" in done.stderr and "exited with code" in done.stderr
    assert "session_ttl_s" in done.stderr  # the child's own error is in the report
    assert "Traceback" not in done.stderr.split("error:")[-1]
