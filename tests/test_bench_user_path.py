"""bench/user_path.py drives the real commands against a model in its own process (tiny sizes;
the figures are not checked, what the commands wrote is)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


@pytest.mark.slow
def test_user_path_through_the_commands(tmp_path: Path) -> None:
    out = tmp_path / "records.jsonl"
    done = subprocess.run(
        [sys.executable, "bench/user_path.py", "--rollouts", "12", "--concurrency", "4", "--runs", "1",
         "--modes", "per_server,colocate,oneshot", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in records] == ["per_server", "colocate", "oneshot"]
    for r in records:
        assert r["exit_code"] == 0 and r["written"] == 12 and r["failures"] == 0, r
        # the scripted policy solves both tasks: a wrong wiring (model, agents, verifiers) would not score 1
        assert r["mean_reward"] == 1.0 and r["by_agent"] == {
            "example_single_tool_call_simple_agent": 6, "example_multi_step_simple_agent": 6}
        assert r["rollouts_per_s"] > 0 and r["ready_s"] > 0 and r["peak_rss_mb"] > 0 and r["model_cpu_ms_per_rollout"] > 0
    assert "| this | oneshot | 1 |" in done.stdout


def test_instant_model_answers_as_the_scripted_policy(tmp_path: Path) -> None:
    """The bare server gives the scripted policy's answers (ids aside) on both APIs."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "bench/instant_model.py", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "instant model at" in proc.stdout.readline()
        from ngym.devkit.testing.scripted_openai import chat_reply, responses_reply
        from ngym.wire.chat import ChatCompletionCreateParams
        from ngym.wire.responses import ResponseCreateParams

        row = json.loads((REPO / "resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[0])
        body = row["responses_create_params"]

        def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(payload).encode(),
                                             {"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                got: dict[str, Any] = json.loads(answer.read())
                return got

        got = post("/v1/responses", body)
        want = responses_reply(ResponseCreateParams.model_validate(body)).model_dump(mode="json")
        assert [(i["type"], i.get("name"), i.get("arguments")) for i in got["output"]] == [
            (i["type"], i.get("name"), i.get("arguments")) for i in want["output"]] == [
            ("function_call", "get_weather", '{"city": "San Francisco"}')]
        chat = {"messages": [{"role": "user", "content": "weather in sf?"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
        got = post("/v1/chat/completions", chat)
        want = chat_reply(ChatCompletionCreateParams.model_validate(chat)).model_dump(mode="json")
        assert got["choices"][0]["message"]["tool_calls"][0]["function"] == want["choices"][0]["message"]["tool_calls"][0]["function"]
        try:
            post("/v1/nothing", {})
        except urllib.error.HTTPError as e:
            assert e.code == 404
        else:
            raise AssertionError("an unknown route must answer 404")
        try:
            post("/v1/responses", {"input": 5})
        except urllib.error.HTTPError as e:
            assert e.code == 400
        else:
            raise AssertionError("an invalid body must answer 400")
    finally:
        proc.terminate()
        proc.wait(10)
