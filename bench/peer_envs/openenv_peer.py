"""The seed mix on Meta's OpenEnv (``openenv-core``) against the OpenAI-compatible model at
``--base-url`` (chat completions). Runs in the peers' virtual environment (``bench/peers.py`` starts it).

Theirs: the environment server (``openenv_server.py``: ``Environment``, ``Action`` / ``Observation``,
``create_app`` — FastAPI, one WebSocket session per client, sync ``step`` run in the session's
executor) and the client (``EnvClient``: ``reset`` / ``step`` over the WebSocket).
Ours: the environment's contents (ngym's tools and rewards, ``seed.py``) and the agent loop — OpenEnv
leaves the agent to the user: an asyncio loop calls the model with the ``openai`` SDK
(``AsyncOpenAI``), sends its tool calls as the action, and feeds the outputs back as tool messages;
one client (one session) per rollout, at most ``--concurrency`` in flight. The server is a child of this
process, so its CPU counts as the peer's.

    .venv-peers/bin/python bench/peer_envs/openenv_peer.py --base-url http://127.0.0.1:8321/v1 --rollouts 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

from seed import ENVS, Report, chat_messages, chat_tools, mix, seed_row

T0 = time.monotonic()
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, sessions: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SEED_MAX_SESSIONS": str(sessions)}
    proc = subprocess.Popen([sys.executable, str(HERE / "openenv_server.py"), "--port", str(port)], cwd=HERE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the OpenEnv server exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the OpenEnv server did not answer /health in 120 s")


def client_class() -> type:
    from openenv.core import EnvClient
    from openenv.core.client_types import StepResult
    from openenv.core.env_server.types import State
    from openenv_server import SeedAction, SeedObservation

    class SeedEnv(EnvClient[SeedAction, SeedObservation, State]):
        def _step_payload(self, action: SeedAction) -> dict[str, Any]:
            return action.model_dump(exclude={"metadata"})

        def _parse_result(self, payload: dict[str, Any]) -> StepResult[SeedObservation]:
            obs = payload.get("observation", {})
            observation = SeedObservation(
                env=obs.get("env", ""),
                tool_outputs=obs.get("tool_outputs", []),
                done=payload.get("done", False),
                reward=payload.get("reward"),
            )
            return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

        def _parse_state(self, payload: dict[str, Any]) -> State:
            return State(episode_id=payload.get("episode_id"), step_count=payload.get("step_count", 0))

    return SeedEnv


async def rollout(client: Any, env_cls: type, url: str, env_id: str, row: dict[str, Any]) -> float:
    from openenv_server import SeedAction

    messages: list[dict[str, Any]] = list(chat_messages(row))
    tools = chat_tools(row)
    async with env_cls(base_url=url, message_timeout_s=600) as env:
        await env.reset(env=env_id, expected_synonym_values=row.get("expected_synonym_values"))
        while True:
            answer = await client.chat.completions.create(model="scripted", messages=messages, tools=tools)
            message = answer.choices[0].message
            calls = message.tool_calls or []
            result = await env.step(
                SeedAction(
                    tool_calls=[{"name": c.function.name, "arguments": c.function.arguments} for c in calls],
                    message=message.content,
                )
            )
            if result.done:
                return float(result.reward or 0.0)
            messages.append(message.model_dump(exclude_none=True))
            for call, output in zip(calls, result.observation.tool_outputs, strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    from openai import AsyncOpenAI

    sys.path.insert(0, str(HERE))
    report = Report("openenv-core", version("openenv-core"))
    port = free_port()
    server = start_server(port, args.concurrency)
    try:
        env_cls = client_class()
        rows = {env: seed_row(env) for env in ENVS}
        client = AsyncOpenAI(base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=600)
        gate = asyncio.Semaphore(args.concurrency)
        url = f"http://127.0.0.1:{port}"

        async def one(env_id: str) -> None:
            async with gate:
                try:
                    report.rewards[env_id].append(await rollout(client, env_cls, url, env_id, rows[env_id]))
                except Exception as e:  # noqa: BLE001 - a failed rollout is counted, not scored
                    report.failures += 1
                    if report.failures <= 3:
                        print(f"rollout failed: {type(e).__name__}: {e}", file=sys.stderr)

        report.ready()
        await asyncio.gather(*(one(env_id) for env_id in mix(args.rollouts)))
        report.done()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    report.emit(ready_s=round((report.t_ready or T0) - T0, 3))


if __name__ == "__main__":
    asyncio.run(main())
