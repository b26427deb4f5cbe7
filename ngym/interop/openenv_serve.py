"""An ngym environment behind OpenEnv's interface, for OpenEnv clients and the trainers built on them.

Served by OpenEnv's own server (``openenv.core.create_fastapi_app``: ``/ws`` sessions, ``/reset``,
``/step``, ``/state``, ``/schema``, ``/health``), so any OpenEnv client (``GenericEnvClient``, or
:class:`NgymEnvClient`, a typed ``EnvClient``) resets and steps it. One OpenEnv session is one ngym
episode of a running resources server (started by ``ng_run``; reached by URL or through the head
server):

* ``reset(seed=..., index=...)`` takes a row of the data file (``index``, else ``seed`` modulo the
  number of rows, else the next row), calls the environment's ``/seed_session`` with it and answers
  the row's prompt: ``text`` (the input messages' text), ``messages``, ``tools``;
* ``step(NgymAction(tool=..., arguments={...}))`` calls that tool of the environment (with the
  episode's cookie) and answers its output as ``text``; a tool the row does not offer is refused;
* ``step(NgymAction(message="..."))`` is the final answer: the episode (tool calls, outputs and the
  answer, as a Responses ``output``) goes to ``/verify``; the observation has ``done: true``, the
  environment's ``reward`` and the verify answer's other fields in ``info``. ``max_steps`` tool calls
  end the episode the same way.

``python -m ngym.interop.openenv_serve --resources-url URL --rows data.jsonl --port 8000`` (or
``--head-url http://127.0.0.1:11000 --resources-server NAME``). Install: ``pip install 'ngym[openenv]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openenv.core import EnvClient
from openenv.core.client_types import StepResult
from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from ngym.data import sources
from ngym.errors import InputError, NgymError
from ngym.server.client import Cookies, ServerClient, fetch_global_config, instance_urls, response_cookies
from ngym.wire.responses import FunctionCall, FunctionCallOutput, Message, OutputText, new_id


class NgymAction(Action):
    """A tool call (``tool`` and ``arguments``) or the final answer (``message``), which ends the episode."""

    tool: str | None = Field(default=None, description="the environment's tool to call")
    arguments: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments")
    message: str | None = Field(default=None, description="the final answer: ends the episode, which is then verified")

    @model_validator(mode="after")
    def _one_of(self) -> NgymAction:
        if (self.tool is None) == (self.message is None):
            # a PydanticCustomError (not a ValueError): OpenEnv's server sends validation errors to the client as
            # JSON, and the exception object a ValueError leaves in them cannot be serialised
            raise PydanticCustomError("ngym_action", "an ngym action is either a tool call (tool, arguments) or a final answer (message), exactly one")
        return self


class NgymObservation(Observation):
    """What the model reads (``text``); at reset also the row's ``messages`` and ``tools``; at the end
    the verify answer's fields in ``info`` (``reward`` and ``done`` are OpenEnv's own)."""

    text: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict)


class NgymState(State):
    row_index: int | None = None
    tool_calls: int = 0
    finished: bool = False
    reward: float | None = None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


@dataclass
class Source:
    """The rows and the resources server the episodes run on (one per OpenEnv server): ``urls`` maps
    instance names to base URLs; ``server`` is the environment's instance name."""

    rows: list[dict[str, Any]]
    urls: dict[str, str]
    server: str
    max_steps: int = 32
    next_row: int = 0
    _client: ServerClient | None = None

    @property
    def client(self) -> ServerClient:
        """One client for all sessions, made in the serving event loop (its connection pool lives there)."""
        if self._client is None:
            self._client = ServerClient(self.urls)
            self._client.url_of(self.server)
        return self._client

    def pick(self, seed: int | None, index: int | None) -> int:
        if not self.rows:
            raise InputError("no rows to play: the data file is empty")
        if index is not None:
            if not 0 <= index < len(self.rows):
                raise InputError(f"row index {index} is out of range: the data file has {len(self.rows)} rows (0 to {len(self.rows) - 1})")
            return index
        if seed is not None:
            return seed % len(self.rows)
        chosen, self.next_row = self.next_row, (self.next_row + 1) % len(self.rows)
        return chosen


@dataclass
class _Episode:
    row: dict[str, Any]
    cookies: Cookies = field(default_factory=dict)
    output: list[Any] = field(default_factory=list)


class NgymEnvironment(Environment[NgymAction, NgymObservation, NgymState]):
    """One OpenEnv session: one ngym episode at a time on ``source``'s resources server."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.episode: _Episode | None = None
        self._state = NgymState()

    # OpenEnv calls the async methods (the sync ones are for direct use outside an event loop)
    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> NgymObservation:
        return asyncio.run(self.reset_async(seed=seed, episode_id=episode_id, **kwargs))

    def step(self, action: NgymAction, timeout_s: float | None = None, **kwargs: Any) -> NgymObservation:
        return asyncio.run(self.step_async(action, timeout_s=timeout_s))

    @property
    def state(self) -> NgymState:
        return self._state

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        assert self.episode is not None
        reply = await self.source.client.post(self.source.server, path, json=body, cookies=self.episode.cookies)
        self.episode.cookies = {**self.episode.cookies, **response_cookies(reply)}
        return reply

    async def reset_async(
        self, seed: int | None = None, episode_id: str | None = None, index: int | None = None, **kwargs: Any
    ) -> NgymObservation:
        chosen = self.source.pick(seed, index)
        row = self.source.rows[chosen]
        self.episode = _Episode(row)
        self._state = NgymState(episode_id=episode_id or new_id("episode"), row_index=chosen)
        reply = await self._post("/seed_session", row)
        if reply.status_code != 200:
            raise RuntimeError(f"the environment's /seed_session refused row {chosen} (HTTP {reply.status_code}): {reply.text[:500]}")
        params = row.get("responses_create_params") or {}
        messages = params.get("input") or []
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        text = "\n\n".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
        return NgymObservation(text=text, messages=messages, tools=list(params.get("tools") or []), done=False, reward=None)

    def _offered(self) -> list[str]:
        assert self.episode is not None
        tools = (self.episode.row.get("responses_create_params") or {}).get("tools") or []
        return [str(t.get("name")) for t in tools if isinstance(t, dict)]

    async def step_async(self, action: NgymAction, timeout_s: float | None = None, **kwargs: Any) -> NgymObservation:
        if self.episode is None or self._state.finished:
            raise RuntimeError("no episode is running: call reset first")
        if action.message is not None:
            self.episode.output.append(
                Message(id=new_id("msg"), role="assistant", status="completed", content=[OutputText(text=action.message)])
            )
            return await self._verify()
        assert action.tool is not None
        offered = self._offered()
        if action.tool not in offered:
            raise ValueError(f"tool {action.tool!r} is not offered by row {self._state.row_index}; its tools: {', '.join(offered) or 'none'}")
        call = FunctionCall(id=new_id("fc"), call_id=new_id("call"), name=action.tool, arguments=json.dumps(action.arguments), status="completed")
        reply = await self._post(f"/{action.tool}", action.arguments)
        output = reply.text
        self.episode.output += [call, FunctionCallOutput(call_id=call.call_id, output=output)]
        self._state.tool_calls += 1
        self._state.step_count += 1
        if self._state.tool_calls >= self.source.max_steps:
            end = await self._verify()
            end.text = f"{output}\n(the episode reached its {self.source.max_steps} tool calls and was verified)"
            return end
        return NgymObservation(text=output, done=False, reward=None)

    async def _verify(self) -> NgymObservation:
        assert self.episode is not None
        response = {"id": new_id("resp"), "output": [item.model_dump(mode="json", exclude_none=True) for item in self.episode.output]}
        reply = await self._post("/verify", {**self.episode.row, "response": response})
        self._state.finished = True
        if reply.status_code != 200:
            raise RuntimeError(f"the environment's /verify failed (HTTP {reply.status_code}): {reply.text[:500]}")
        verdict = dict(reply.json())
        reward = float(verdict.get("reward", 0.0))
        self._state.reward = reward
        info = {k: v for k, v in verdict.items() if k not in ("reward", "response", "responses_create_params")}
        return NgymObservation(text=f"The episode is over. Reward: {reward}", done=True, reward=reward, info=info)


class NgymEnvClient(EnvClient[NgymAction, NgymObservation, NgymState]):
    """OpenEnv's typed client for an ngym environment served by :func:`build_app`."""

    def _step_payload(self, action: NgymAction) -> dict[str, Any]:
        payload: dict[str, Any] = action.model_dump(exclude_none=True)
        return payload

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[NgymObservation]:
        observation = NgymObservation(**payload.get("observation", {}), done=payload.get("done", False), reward=payload.get("reward"))
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> NgymState:
        return NgymState(**payload)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The episodes' rows: a JSONL file, a Parquet file or a saved Hugging Face dataset in ngym's row format."""
    return list(sources.read_rows(path))


def build_app(source: Source, max_concurrent_envs: int = 64) -> Any:
    """OpenEnv's FastAPI app serving ``source``'s environment, one :class:`NgymEnvironment` per session."""
    return create_fastapi_app(lambda: NgymEnvironment(source), NgymAction, NgymObservation, max_concurrent_envs=max_concurrent_envs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.openenv_serve", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--resources-url", help="the resources server's base URL, e.g. http://127.0.0.1:12001")
    where.add_argument("--head-url", help="ng_run's head server (with --resources-server)")
    parser.add_argument("--resources-server", default="env", help="the resources server's instance name (with --head-url)")
    parser.add_argument("--rows", required=True, help="the episodes' rows: JSONL, Parquet or a saved Hugging Face dataset")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-steps", type=int, default=32, help="tool calls before the episode is verified")
    parser.add_argument("--max-concurrent-envs", type=int, default=64)
    args = parser.parse_args(argv)
    import uvicorn

    from ngym.config.schema import HeadServerConfig

    try:
        rows = read_rows(args.rows)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.resources_url:
        urls, server = {"env": args.resources_url.rstrip("/")}, "env"
    else:
        host, _, port = args.head_url.split("//")[-1].rstrip("/").partition(":")
        try:
            urls = instance_urls(asyncio.run(fetch_global_config(HeadServerConfig(host=host, port=int(port or 11000)))))
        except NgymError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        server = args.resources_server
        if server not in urls:
            print(f"error: no server instance named {server!r} at {args.head_url}; instances: {sorted(urls)}", file=sys.stderr)
            return 2
    source = Source(rows, urls, server, max_steps=args.max_steps)
    uvicorn.run(build_app(source, args.max_concurrent_envs), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
