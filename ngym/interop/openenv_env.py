"""An OpenEnv environment server as an ngym resources server, through OpenEnv's own client.

OpenEnv (``openenv-core``) environments are Gym-style servers: ``reset(seed=...)`` answers the first
observation, ``step(action)`` the next one with a ``reward`` and ``done``, ``state`` the episode's
state; a session is one WebSocket connection of OpenEnv's ``EnvClient`` (its HTTP ``/reset`` and
``/step`` routes are stateless: each builds a fresh environment). This server maps them onto ngym's
episode:

The OpenEnv server is named by ``openenv_url``, or served by this process (``openenv_app``:
``module:attribute`` of an OpenEnv app, started on a free loopback port at the first episode).

* ``/seed_session`` opens one OpenEnv client session for the episode and resets it with the row's
  ``reset`` arguments (``seed``, ``episode_id`` or the environment's own keywords); it answers the
  first observation;
* the tool (``/step`` by default, ``tool_name`` in the config) takes the OpenEnv action's fields as
  its arguments and answers ``{"observation": ..., "reward": ..., "done": ...}``;
* ``/verify`` gives the episode's reward from the observations: their sum (``reward: sum``, the
  default: the return of the episode) or the last one (``reward: last``); ``finished`` says whether
  the environment said ``done``. The session is closed there.

Refused, naming what the server has (:class:`UnsupportedOpenEnv`): OpenEnv MCP environments (their
actions are ``list_tools``/``call_tool``: serve MCP tools with ngym's ``mcp_tools`` environment
instead), and action schemas that are not an object of fields (nothing a function tool can carry).

``python -m ngym.interop.openenv_env rows URL --seeds 0-4`` writes data rows whose prompt holds each
reset's first observation and whose tool is the action's JSON schema (from the server's ``/schema``).
Install: ``pip install 'ngym[openenv]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ngym.env.resources import ResourcesServer, ResourcesServerConfig
from ngym.errors import FailureKind, InputError, RolloutError
from ngym.server.sessions import SessionStore, session_id
from ngym.wire.rows import SeedSessionRequest, VerifyRequest, VerifyResponse

#: the OpenEnv action types of MCP environments (openenv.core.env_server.mcp_types)
MCP_ACTIONS = ("list_tools", "call_tool")


class UnsupportedOpenEnv(InputError):
    """An OpenEnv environment this adapter cannot serve (an MCP environment, an action that is not an
    object of fields), or an OpenEnv server that cannot be reached."""


def _client(url: str, message_timeout_s: float = 60.0) -> Any:
    try:
        from openenv.core import GenericEnvClient
    except ImportError:
        raise UnsupportedOpenEnv("openenv-core is not installed: pip install 'ngym[openenv]'") from None
    return GenericEnvClient(base_url=url, message_timeout_s=message_timeout_s)


def serve_in_thread(target: str, timeout_s: float = 180.0) -> str:
    """Serve the OpenEnv app ``module:attribute`` with uvicorn in a daemon thread of this process, on a
    free loopback port; returns its URL once ``/health`` answers."""
    import importlib

    import uvicorn

    module, _, attribute = target.partition(":")
    try:
        app = getattr(importlib.import_module(module), attribute or "app")
    except (ImportError, AttributeError) as e:
        raise UnsupportedOpenEnv(f"openenv_app {target!r} cannot be loaded ({type(e).__name__}: {e}); write module:attribute, e.g. resources_servers.openenv.guess_env.server:app") from None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, name=f"openenv:{target}", daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise UnsupportedOpenEnv(f"openenv_app {target!r} did not answer on {url} within {timeout_s:.0f} s")


def fetch_schema(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The OpenEnv server's ``GET /schema`` (action, observation and state JSON schemas)."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/schema", timeout=timeout_s)
    except httpx.HTTPError as e:
        raise UnsupportedOpenEnv(f"the OpenEnv server at {url} cannot be reached ({type(e).__name__}: {e}); start it, or fix openenv_url") from None
    if answer.status_code != 200:
        raise UnsupportedOpenEnv(f"the OpenEnv server at {url} answered GET /schema with HTTP {answer.status_code}: {answer.text[:300]}")
    schema: dict[str, Any] = answer.json()
    return schema


def action_parameters(schema: dict[str, Any], url: str = "the OpenEnv server") -> dict[str, Any]:
    """The JSON schema of the tool's arguments: the OpenEnv action's fields (``metadata`` left out).

    Refused: MCP environments and actions that are not an object of fields."""
    action = dict(schema.get("action") or {})
    props = dict(action.get("properties") or {})
    kinds = {p.get("default") for name, p in props.items() if name == "type" and isinstance(p, dict)}
    title = str(action.get("title", ""))
    if kinds & set(MCP_ACTIONS) or title in ("CallToolAction", "ListToolsAction") or (action.get("type") == "object" and set(props) <= {"metadata"}):
        raise UnsupportedOpenEnv(
            f"{url} serves an OpenEnv MCP environment (action {title or 'Action'} with no fields of its own: its tools are "
            f"called with list_tools/call_tool). This adapter plays Gym-style step actions; serve MCP tools with ngym's "
            f"mcp_tools environment instead."
        )
    if action.get("type") != "object" or not props:
        raise UnsupportedOpenEnv(
            f"{url}: the OpenEnv action schema is not an object of fields ({json.dumps(action)[:200]}); a function tool "
            f"can only carry named JSON arguments"
        )
    props.pop("metadata", None)
    params: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [r for r in action.get("required", []) if r in props]
    if required:
        params["required"] = required
    if "$defs" in action:
        params["$defs"] = action["$defs"]
    return params


def split_observation(payload: dict[str, Any]) -> tuple[dict[str, Any], float | None, bool]:
    """OpenEnv's step/reset answer (``{"observation", "reward", "done"}``) as (fields, reward, done)."""
    observation = dict(payload.get("observation") or {})
    reward = payload.get("reward")
    return observation, (None if reward is None else float(reward)), bool(payload.get("done", False))


# ---- the server ------------------------------------------------------------------------------------


class OpenEnvConfig(ResourcesServerConfig):
    #: the OpenEnv server's base URL (http:// or ws://)
    openenv_url: str | None = None
    #: or an OpenEnv app (``module:attribute``, e.g. ``resources_servers.openenv.guess_env.server:app``)
    #: served by this process on a free loopback port, started at the first episode
    openenv_app: str | None = None
    #: the tool that takes the OpenEnv action
    tool_name: str = "step"
    #: the episode's reward: the sum of the step rewards (its return) or the last one
    reward: Literal["sum", "last"] = "sum"
    #: seconds an idle episode's OpenEnv session is kept
    session_ttl_s: float = 3600.0
    #: seconds one reset or step may take
    message_timeout_s: float = 60.0


class OpenEnvTask(SeedSessionRequest):
    #: keyword arguments of OpenEnv's reset (``seed``, ``episode_id``, the environment's own)
    reset: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Episode:
    client: Any
    rewards: list[float] = field(default_factory=list)
    done: bool = False
    steps: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class OpenEnvServer(ResourcesServer):
    """An OpenEnv environment server, one OpenEnv client session per ngym episode."""

    config: OpenEnvConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.episodes: SessionStore[Episode] = SessionStore(ttl_s=self.config.session_ttl_s)
        self._checked = False
        self._start_lock = threading.Lock()
        self._url: str | None = self.config.openenv_url

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post(f"/{self.config.tool_name}")(self.step)
        return app

    @property
    def url(self) -> str:
        assert self._url is not None, "the OpenEnv server is not known yet"
        return self._url

    def _check(self) -> None:
        """Find (or start) the OpenEnv server and refuse an environment that cannot be served (once)."""
        with self._start_lock:
            if self._checked:
                return
            if self._url is None:
                if not self.config.openenv_app:
                    raise UnsupportedOpenEnv("neither openenv_url nor openenv_app is set: name the OpenEnv server's URL, or its app (module:attribute)")
                self._url = serve_in_thread(self.config.openenv_app)
            action_parameters(fetch_schema(self.url), self.url)
            self._checked = True

    async def seed_session(self, body: OpenEnvTask, request: Request) -> dict[str, Any]:  # type: ignore[override]
        try:
            await asyncio.to_thread(self._check)
        except UnsupportedOpenEnv as e:
            raise RolloutError(f"{self.config.name}: {e}", kind=FailureKind.BAD_INPUT, status=400) from None
        sid = session_id(request)
        old = self.episodes.pop(sid, None)
        if old is not None:
            await _close(old.client)
        client = _client(self.url, self.config.message_timeout_s)
        try:
            first = await client.reset(**body.reset)
        except RuntimeError as e:  # the environment's own answer: the row's reset arguments are wrong for it
            await _close(client)
            raise RolloutError(
                f"{self.config.name}: the OpenEnv environment at {self.url} refused reset({body.reset}): {e}",
                kind=FailureKind.BAD_INPUT, status=400,
            ) from None
        except Exception as e:  # noqa: BLE001 - the server cannot be reached (ConnectionError, timeouts)
            await _close(client)
            raise RolloutError(
                f"{self.config.name}: OpenEnv reset at {self.url} with {body.reset} failed: {e}",
                kind=FailureKind.RESOURCES_ERROR, status=502,
            ) from None
        episode = Episode(client)
        observation, reward, done = first.observation, first.reward, first.done
        if reward is not None:
            episode.rewards.append(float(reward))
        episode.done = bool(done)
        self.episodes[sid] = episode
        return {"observation": observation, "done": episode.done}

    async def step(self, body: dict[str, Any], request: Request) -> dict[str, Any]:
        episode = self.episodes.get(session_id(request))
        if episode is None:
            return {"error": "No OpenEnv episode is running in this session (was /seed_session called?)", "done": True}
        if episode.done:
            return {"error": "The episode is over.", "done": True}
        async with episode.lock:
            try:
                result = await episode.client.step(dict(body))
            except RuntimeError as e:  # the server's answer to an action it refuses (validation, execution)
                return {"error": str(e), "done": False}
            except Exception as e:  # noqa: BLE001 - the connection is gone: the episode cannot go on
                raise RolloutError(
                    f"{self.config.name}: OpenEnv step at {self.url} failed: {type(e).__name__}: {e}",
                    kind=FailureKind.RESOURCES_ERROR, status=502,
                ) from None
        episode.steps += 1
        if result.reward is not None:
            episode.rewards.append(float(result.reward))
        episode.done = bool(result.done)
        return {"observation": result.observation, "reward": result.reward, "done": episode.done}

    async def verify(self, body: VerifyRequest, request: Request) -> VerifyResponse:  # type: ignore[override]
        episode = self.episodes.pop(session_id(request), None)
        if episode is None:
            raise RolloutError(
                f"{self.config.name}: no OpenEnv episode for this session (was /seed_session called with the row, and its "
                f"cookie passed on?)", kind=FailureKind.VERIFIER_ERROR, status=409,  # the caller's mistake: never a reward
            )
        await _close(episode.client)
        rewards = episode.rewards
        reward = (sum(rewards) if self.config.reward == "sum" else rewards[-1]) if rewards else 0.0
        return VerifyResponse.of(body, reward=reward, finished=episode.done, openenv_steps=episode.steps)


async def _close(client: Any) -> None:
    try:
        await client.close()
    except Exception:  # noqa: BLE001,S110 - best effort: the session ends either way
        pass


# ---- data rows ---------------------------------------------------------------------------------------

PROMPT = (
    "You are acting in an environment. Take one action per call of the `{tool}` tool; it answers the new "
    "observation, the reward and whether the episode is done. Keep acting until it is done.\n\nObservation: {observation}"
)


class RowsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    seeds: list[int]
    agent: str
    tool_name: str = "step"
    description: str = "Take one action in the environment."


async def _first_observation(url: str, reset: dict[str, Any]) -> dict[str, Any]:
    client = _client(url)
    try:
        result = await client.reset(**reset)
        observation: dict[str, Any] = result.observation
        return observation
    finally:
        await _close(client)


def make_rows(args: RowsArgs) -> list[dict[str, Any]]:
    """:func:`rows_for` outside an event loop."""
    return asyncio.run(rows_for(args))


async def rows_for(args: RowsArgs) -> list[dict[str, Any]]:
    """Rows for ``args.seeds``: the prompt holds each reset's first observation, the tool the action's schema."""
    params = action_parameters(await asyncio.to_thread(fetch_schema, args.url), args.url)
    tool = {"type": "function", "name": args.tool_name, "description": args.description, "parameters": params, "strict": False}
    rows = []
    for seed in args.seeds:
        first = await _first_observation(args.url, {"seed": seed})
        prompt = PROMPT.format(tool=args.tool_name, observation=json.dumps(first))
        rows.append({
            "responses_create_params": {"input": [{"role": "user", "content": prompt}], "tools": [tool]},
            "reset": {"seed": seed},
            "agent_ref": {"type": "responses_api_agents", "name": args.agent},
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.openenv_env")
    sub = parser.add_subparsers(dest="command", required=True)
    rows = sub.add_parser("rows", help="data rows (JSONL on stdout): each reset's first observation, the action as the tool")
    rows.add_argument("url", help="the OpenEnv server's base URL, e.g. http://127.0.0.1:8000")
    rows.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 1,5,9")
    rows.add_argument("--agent", default="openenv_simple_agent")
    rows.add_argument("--tool-name", default="step")
    args = parser.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi) + 1)) if hi else [int(s) for s in args.seeds.split(",")]
    try:
        for row in make_rows(RowsArgs(url=args.url, seeds=seeds, agent=args.agent, tool_name=args.tool_name)):
            print(json.dumps(row))
    except UnsupportedOpenEnv as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
