"""OpenEnv both ways, with real processes and OpenEnv's own client and server.

(a) An OpenEnv environment server (resources_servers/openenv/guess_env, written in OpenEnv's style and
served by OpenEnv's ``create_app``) played as an ngym environment: ngym's server talks to it through
OpenEnv's ``GenericEnvClient`` (one WebSocket session per episode); end to end with ng_run, the
simple agent and the scripted model. (b) An ngym environment (example_multi_step, started by ng_run)
served with OpenEnv's interface (ngym.interop.openenv_serve) and played with OpenEnv's clients.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("openenv.core")

from ngym.devkit.testing.asgi import wire  # noqa: E402
from ngym.interop.openenv_env import OpenEnvServer, RowsArgs, UnsupportedOpenEnv, action_parameters, fetch_schema, rows_for  # noqa: E402
from ngym.server.client import ServerClient, response_cookies  # noqa: E402
from tests.e2e.conftest import REPO, command_env, free_port  # noqa: E402
from tests.e2e.procs import NgRun, read_jsonl  # noqa: E402
from tests.fakes import make  # noqa: E402

EXAMPLE = REPO / "resources_servers" / "openenv" / "data" / "example.jsonl"
MULTI_STEP_ROWS = REPO / "resources_servers" / "example_multi_step" / "data" / "example.jsonl"


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180.0) -> None:
    """OpenEnv's server imports gradio at start: tens of seconds on a busy machine."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError(url)


def start(args: list[str], health: str, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    """A server process; its output goes to a file (a pipe nobody reads would block it once full)."""
    log = Path(tempfile.mkstemp(prefix="ngym-openenv-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=command_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_up(health, proc, log)
    except BaseException:
        proc.kill()
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def guess_url() -> Iterator[str]:
    port = free_port()
    proc = start(["-m", "resources_servers.openenv.guess_env.server", "--port", str(port)], f"http://127.0.0.1:{port}/health")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    port = free_port()
    proc = start(["-m", "resources_servers.openenv.guess_env.server", "--mcp", "--port", str(port)], f"http://127.0.0.1:{port}/health")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def secret_of(seed: int) -> int:
    import random

    return random.Random(seed).randint(1, 100)


async def play(client: ServerClient, row: dict[str, Any], guesses: list[int] | str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``guesses``: a list, or ``"bisect"`` to play by the environment's hints."""
    seeded = await client.post("env", "/seed_session", json=row)
    assert seeded.status_code == 200, seeded.text
    cookies = response_cookies(seeded)
    answers: list[dict[str, Any]] = []
    lo, hi = 1, 100
    for k in range(7):
        guess = (lo + hi) // 2 if guesses == "bisect" else guesses[k] if k < len(guesses) else None
        if guess is None:
            break
        answer = (await client.post("env", "/step", json={"guess": guess}, cookies=cookies)).json()
        answers.append(answer)
        if answer.get("done"):
            break
        message = answer["observation"]["message"]
        lo, hi = (guess + 1, hi) if "higher" in message else (lo, guess - 1)
    verified = await client.post("env", "/verify", json={**row, "response": {"output": []}}, cookies=cookies)
    assert verified.status_code == 200, verified.text
    return verified.json(), answers


# ---- (a) an OpenEnv server as an ngym environment -----------------------------------------------------


@pytest.mark.anyio
async def test_openenv_episodes_score_the_environments_rewards(guess_url: str) -> None:
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_url=guess_url)})
    rows = await rows_for(RowsArgs(url=guess_url, seeds=[0, 1, 2, 3, 4], agent="openenv_simple_agent"))
    for row in rows:
        won, answers = await play(client, row, "bisect")
        assert won["reward"] == 1.0 and won["finished"] is True and answers[-1]["done"]
        assert won["openenv_steps"] == len(answers) and "is right" in answers[-1]["observation"]["message"]
    row, secret = rows[2], secret_of(2)
    wrong = [g for g in range(1, 100) if g != secret][:7]
    lost, answers = await play(client, row, wrong)
    assert (lost["reward"], lost["finished"], len(answers)) == (0.0, True, 7), "seven wrong guesses: over, reward 0"
    assert "No guesses left" in answers[-1]["observation"]["message"]
    unfinished, answers = await play(client, row, wrong[:2])
    assert (unfinished["reward"], unfinished["finished"]) == (0.0, False)
    # the reward is the environment's: a guess of the secret after wrong ones still wins
    late, _ = await play(client, row, [*wrong[:3], secret])
    assert (late["reward"], late["finished"], late["openenv_steps"]) == (1.0, True, 4)


@pytest.mark.anyio
async def test_episodes_are_separate_sessions_and_bad_actions_are_answered(guess_url: str) -> None:
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_url=guess_url)})
    rows = await rows_for(RowsArgs(url=guess_url, seeds=[5, 6], agent="a"))
    a = response_cookies(await client.post("env", "/seed_session", json=rows[0]))
    b = response_cookies(await client.post("env", "/seed_session", json=rows[1]))
    await client.post("env", "/step", json={"guess": secret_of(6)}, cookies=b)  # b wins; a is untouched
    bad = (await client.post("env", "/step", json={"guess": "seven"}, cookies=a)).json()
    assert bad["done"] is False and "VALIDATION_ERROR" in bad["error"], "an action the environment refuses is answered; the episode goes on"
    assert (await client.post("env", "/verify", json={**rows[0], "response": {"output": []}}, cookies=a)).json()["reward"] == 0.0
    assert (await client.post("env", "/verify", json={**rows[1], "response": {"output": []}}, cookies=b)).json()["reward"] == 1.0
    missing = await client.post("env", "/verify", json={**rows[0], "response": {"output": []}}, cookies=a)
    assert missing.status_code == 409 and missing.json()["kind"] == "verifier_error", "the session is closed by verify"
    refused = await client.post("env", "/seed_session", json={"reset": {"seed": [1]}})  # the environment refuses it
    assert refused.status_code == 400 and refused.json()["kind"] == "bad_input" and "refused reset({'seed': [1]})" in refused.json()["error"]


@pytest.mark.anyio
async def test_last_reward_mode(guess_url: str) -> None:
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_url=guess_url, reward="last")})
    row = (await rows_for(RowsArgs(url=guess_url, seeds=[3], agent="a")))[0]
    won, _ = await play(client, row, "bisect")
    assert won["reward"] == 1.0


def test_example_rows_are_what_the_rows_command_writes(guess_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ngym.interop.openenv_env", "rows", guess_url, "--seeds", "0-4"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == read_jsonl(EXAMPLE)
    tool = read_jsonl(EXAMPLE)[0]["responses_create_params"]["tools"][0]
    assert tool["name"] == "step" and tool["parameters"]["required"] == ["guess"] and "metadata" not in tool["parameters"]["properties"]


@pytest.mark.anyio
async def test_an_mcp_environment_is_refused_naming_what_it_is(mcp_url: str) -> None:
    with pytest.raises(UnsupportedOpenEnv, match="MCP environment .*list_tools/call_tool.*mcp_tools"):
        action_parameters(fetch_schema(mcp_url), mcp_url)
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_url=mcp_url)})
    answer = await client.post("env", "/seed_session", json={"reset": {"seed": 0}})
    assert answer.status_code == 400 and answer.json()["kind"] == "bad_input" and "MCP environment" in answer.json()["error"]
    done = subprocess.run([sys.executable, "-m", "ngym.interop.openenv_env", "rows", mcp_url], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "MCP environment" in done.stderr and not done.stdout


@pytest.mark.anyio
async def test_an_app_that_cannot_be_loaded_is_named() -> None:
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_app="no_such_module:app")})
    answer = await client.post("env", "/seed_session", json={"reset": {"seed": 0}})
    assert answer.status_code == 400 and "openenv_app 'no_such_module:app' cannot be loaded" in answer.json()["error"]
    client = wire({"env": make(OpenEnvServer, "env", domain="games")})
    answer = await client.post("env", "/seed_session", json={"reset": {"seed": 0}})
    assert answer.status_code == 400 and "neither openenv_url nor openenv_app is set" in answer.json()["error"]


@pytest.mark.anyio
async def test_an_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = wire({"env": make(OpenEnvServer, "env", domain="games", openenv_url=url)})
    answer = await client.post("env", "/seed_session", json={"reset": {"seed": 0}})
    assert answer.status_code == 400 and f"the OpenEnv server at {url} cannot be reached" in answer.json()["error"]


@pytest.mark.slow
def test_collect_rollouts_end_to_end_with_the_simple_agent(workdir: Path) -> None:
    """ng_run (the openenv environment as configured: the guess environment's OpenEnv app served in the
    environment's process; simple_agent; the scripted model) and ng_collect_rollouts over the 5 example
    rows: the scripted policy plays by the environment's hints and wins each game."""
    model = "responses_api_models/openai_model/configs/openai_model.yaml"
    config = "resources_servers/openenv/configs/openenv.yaml"
    port = free_port()
    run = NgRun([f"+config_paths=[{model},{config}]", f"+head_server.port={port}"], workdir)
    try:
        run.wait_ready()
        out = workdir / "results" / "openenv.jsonl"
        done = subprocess.run(
            ["ng_collect_rollouts", f"+input_jsonl_fpath={EXAMPLE}", f"+output_jsonl_fpath={out}", f"+head_server.port={port}"],
            cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        rollouts = read_jsonl(out)
        assert len(rollouts) == 5 and all(r["reward"] == 1.0 and r["finished"] for r in rollouts), [r.get("reward") for r in rollouts]
        calls = [[i for i in r["response"]["output"] if i["type"] == "function_call"] for r in rollouts]
        assert all(1 <= len(c) <= 7 and all(i["name"] == "step" for i in c) for c in calls)
        assert [r["openenv_steps"] for r in rollouts] == [len(c) for c in calls], "every tool call was an OpenEnv step"
    finally:
        run.proc.terminate()
        run.proc.wait(30)


# ---- (b) an ngym environment behind OpenEnv's interface ---------------------------------------------------


DOC = REPO / "docs" / "interop.md"


def doc_command(prefix: str) -> list[str]:
    """The ``$ <prefix> ...`` line of docs/interop.md, split as the shell would."""
    line = next(line for line in DOC.read_text().splitlines() if line.startswith(f"$ {prefix}"))
    return shlex.split(line[2:].removesuffix(" &"))


@pytest.fixture(scope="module")
def ngym_as_openenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docs/interop.md's commands: example_multi_step started by ng_run, and OpenEnv's server for it
    (ngym.interop.openenv_serve) found through the head server."""
    work = tmp_path_factory.mktemp("ngym_as_openenv")
    for folder in ("resources_servers", "responses_api_models"):
        (work / folder).symlink_to(REPO / folder)
    (work / "env.yaml").write_text("policy_base_url: http://127.0.0.1:9/v1\npolicy_api_key: unused\npolicy_model_name: unused\n")
    head = free_port()
    ng_run = doc_command("ng_run \"+config_paths=[resources_servers/example_multi_step")
    run = NgRun([*ng_run[1:], f"+head_server.port={head}"], work)
    try:
        run.wait_ready()
        port = free_port()
        serve = [a.replace("http://127.0.0.1:11000", f"http://127.0.0.1:{head}") for a in doc_command("python -m ngym.interop.openenv_serve")]
        serve[serve.index("--port") + 1] = str(port)
        proc = start([*serve[1:], "--max-steps", "6"], f"http://127.0.0.1:{port}/health", cwd=work)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)
    finally:
        run.proc.terminate()
        run.proc.wait(30)


@pytest.mark.slow
def test_the_docs_client_example_plays_an_ngym_environment(ngym_as_openenv: str) -> None:
    block = re.search(r"```python\n(.*?)```", DOC.read_text().split("### An ngym environment for OpenEnv clients")[1], flags=re.S)
    assert block is not None
    code = block.group(1).replace('URL = "http://127.0.0.1:8000"', f'URL = "{ngym_as_openenv}"')
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['get_synonym_value', 'extract_synonym_values']", "True 1.0"]


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_openenv_client_plays_an_ngym_environment(ngym_as_openenv: str) -> None:
    from openenv.core import GenericEnvClient

    from ngym.interop.openenv_serve import NgymAction, NgymEnvClient

    rows = read_jsonl(MULTI_STEP_ROWS)
    expected = rows[0]["expected_synonym_values"]
    async with NgymEnvClient(base_url=ngym_as_openenv) as env:  # OpenEnv's EnvClient, typed
        first = await env.reset(index=0)
        assert first.done is False and [t["name"] for t in first.observation.tools] == ["get_synonym_value", "extract_synonym_values"]
        assert "high temperatures" in first.observation.text
        values = []
        for synonym in rows[0]["expected_synonyms"]:
            step = await env.step(NgymAction(tool="get_synonym_value", arguments={"synonym": synonym}))
            values.append(json.loads(step.observation.text)["synonym_value"])
            assert step.done is False and step.reward is None
        assert values == expected, "the environment's tool answered through OpenEnv"
        await env.step(NgymAction(tool="extract_synonym_values", arguments={"synonym_values": values}))
        state = await env.state()
        assert (state.row_index, state.tool_calls, state.finished) == (0, 3, False)
        end = await env.step(NgymAction(message="Extracted."))
        assert (end.done, end.reward, end.observation.info["accuracy"]) == (True, 1.0, True)
        # the same row answered wrongly: the environment's verifier says 0
        await env.reset(index=0)
        await env.step(NgymAction(tool="extract_synonym_values", arguments={"synonym_values": list(reversed(expected))}))
        wrong = await env.step(NgymAction(message="Extracted."))
        assert (wrong.done, wrong.reward, wrong.observation.info["order_instruction_following_failure"]) == (True, 0.0, True)

    async with GenericEnvClient(base_url=ngym_as_openenv) as generic:  # OpenEnv's untyped client
        first_dict = await generic.reset(seed=len(rows) + 1)  # seed modulo the rows: row 1
        assert (await generic.state())["row_index"] == 1 and first_dict.observation["tools"]
        with pytest.raises(RuntimeError, match="tool 'delete_everything' is not offered by row 1; its tools: get_synonym_value, extract_synonym_values"):
            await generic.step({"tool": "delete_everything", "arguments": {}})
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):
            await generic.step({"tool": "get_synonym_value", "message": "both"})
        for _ in range(6):  # --max-steps 6: the sixth tool call ends the episode, verified
            last = await generic.step({"tool": "get_synonym_value", "arguments": {"synonym": "Tiny"}})
        assert last.done is True and last.reward == 0.0 and "reached its 6 tool calls" in last.observation["text"]
        with pytest.raises(RuntimeError, match="no episode is running: call reset first"):
            await generic.step({"message": "again"})
        with pytest.raises(RuntimeError, match="row index 99 is out of range: the data file has 5 rows"):
            await generic.reset(index=99)


def test_an_ngym_action_is_a_tool_call_or_an_answer() -> None:
    from ngym.interop.openenv_serve import NgymAction

    assert NgymAction(tool="t").arguments == {} and NgymAction(message="m").tool is None
    for bad in ({}, {"tool": "t", "message": "m"}):
        with pytest.raises(ValueError, match="either a tool call"):
            NgymAction(**bad)


def test_concurrent_openenv_sessions(guess_url: str) -> None:
    """Several OpenEnv sessions at once on the guess server (OpenEnv's sync client), each its own game."""
    from openenv.core import GenericEnvClient

    async def one(seed: int) -> float:
        async with GenericEnvClient(base_url=guess_url) as env:
            await env.reset(seed=seed)
            result = await env.step({"guess": secret_of(seed)})
            return float(result.reward)

    async def all_of() -> list[float]:
        return list(await asyncio.gather(*(one(s) for s in range(8))))

    assert asyncio.run(all_of()) == [1.0] * 8
