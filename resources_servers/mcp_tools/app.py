"""mcp_tools: tools served by an MCP server (official ``mcp`` SDK, stdio or streamable HTTP), given
to the model as ordinary function tools; the verifier reads the server's final state.

At start-up the environment opens one MCP session (``server``: the shipped ``kv_server.py`` by
default, or any MCP server) and lists its tools; each visible tool becomes a route ``POST /<tool>``
and a function tool in the ``/seed_session`` answer, with the ``namespace_argument`` removed from
its parameters: the environment fills it with the episode's own key, so episodes are isolated in
one server. ``seed`` writes the task's ``initial_state``; ``verify`` reads the namespace with the
``state_tool`` and compares it with ``expected_state``: reward 1.0 iff equal (every key, every value,
no extra key); the verify response lists missing, wrong and extra keys and ``key_accuracy``.

The typed contract declares tools statically (``@tool``); an MCP server's tools are only known once
it runs, so this environment adds their routes and seed answer itself (``setup_webserver``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import Response as HTTPResponse

from ngym.env import EnvConfig, Environment, Verdict, VerifierError
from ngym.server.sessions import session_id
from ngym.wire.responses import Response
from resources_servers.mcp_tools.mcp_bridge import McpConnection, McpError, McpServerConfig, model_tool, result_json


class KvTask(BaseModel):
    initial_state: dict[str, str] = Field(default_factory=dict)
    expected_state: dict[str, str]


class McpState(BaseModel):
    namespace: str = ""
    calls: int = 0


class McpToolsConfig(EnvConfig):
    server: McpServerConfig = Field(default_factory=McpServerConfig)
    namespace_argument: str = "namespace"
    hidden_tools: list[str] = Field(default_factory=lambda: ["snapshot", "reset"])
    state_tool: str = "snapshot"
    reset_tool: str | None = "reset"
    max_calls: int = Field(50, ge=1, description="tool calls per episode")


def _json(value: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(value), status_code=status, media_type="application/json")


class McpToolsEnvironment(Environment[KvTask, McpState]):
    config: McpToolsConfig

    async def setup(self) -> None:
        self.connection = McpConnection(self.config.server)
        try:
            tools = await self.connection.start()
        except McpError as e:
            raise VerifierError(f"{self.config.name}: {e}") from e
        names = {t.name for t in tools}
        for needed in filter(None, [self.config.state_tool, self.config.reset_tool]):
            if needed not in names:
                raise VerifierError(f"{self.config.name}: the MCP server has no tool {needed!r} (its tools: "
                                    f"{sorted(names)}); set state_tool / reset_tool.")
        hidden = set(self.config.hidden_tools)
        self.visible = {t.name: t for t in tools if t.name not in hidden}
        self.model_tools = [model_tool(t, {self.config.namespace_argument}) for t in self.visible.values()]

    async def _call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            return result_json(await self.connection.call(name, arguments))
        except McpError as e:
            raise VerifierError(f"{self.config.name}: {e}") from e

    async def seed(self) -> None:
        self.state.namespace = secrets.token_hex(16)
        space = {self.config.namespace_argument: self.state.namespace}
        for key, value in self.task.initial_state.items():
            answer = await self._call("put", {**space, "key": key, "value": value})
            if "error" in answer:
                raise VerifierError(f"{self.config.name}: cannot write the initial state ({answer['error']})")

    async def verify(self, response: Response) -> Verdict:
        expected = self.task.expected_state
        if not self.state.namespace:  # not seeded: nothing was done
            return Verdict(reward=float(not expected), missing=sorted(expected), wrong=[], extra=[],
                           key_accuracy=0.0 if expected else 1.0, tool_calls=0)
        answer = await self._call(self.config.state_tool, {self.config.namespace_argument: self.state.namespace})
        final = answer.get("result")
        if not isinstance(final, dict):
            raise VerifierError(f"{self.config.name}: {self.config.state_tool} answered {answer!r}, not a dict of "
                                f"keys and values")
        missing = sorted(set(expected) - set(final))
        wrong = sorted(k for k in set(expected) & set(final) if str(final[k]) != expected[k])
        extra = sorted(set(final) - set(expected))
        right = len(expected) - len(missing) - len(wrong)
        return Verdict(reward=float(not (missing or wrong or extra)), missing=missing, wrong=wrong, extra=extra,
                       key_accuracy=round(right / max(1, len(expected) + len(extra)), 4),
                       final_state=final, tool_calls=self.state.calls)

    # ---- the MCP server's tools as routes -------------------------------------------------------

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()

        @app.post("/{tool_name}", response_model=None)
        async def call_tool(tool_name: str, request: Request, body: dict[str, Any] | None = None) -> HTTPResponse:
            await self._ensure_setup()
            if tool_name not in self.visible:
                return _json({"error": f"no tool {tool_name!r}; the tools are {sorted(self.visible)}"}, 404)
            episode = self.episodes.get(session_id(request))
            state = cast(McpState, episode.state) if episode is not None else None
            if state is None or not state.namespace:
                return _json({"error": "no episode: POST /seed_session first and keep its cookie"})
            arguments = dict(body or {})
            if self.config.namespace_argument in arguments:
                return _json({"error": f"unknown argument {self.config.namespace_argument!r}"})
            if state.calls >= self.config.max_calls:
                return _json({"error": f"at most {self.config.max_calls} tool calls per task"})
            state.calls += 1
            arguments[self.config.namespace_argument] = state.namespace
            return _json(await self._call(tool_name, arguments))

        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(asgi: Any) -> AsyncIterator[Any]:
            async with inner(asgi) as state:
                yield state
            connection = getattr(self, "connection", None)
            if connection is not None:  # the session, and the server process the environment started
                await connection.close()

        app.router.lifespan_context = lifespan
        return app

    def _seed_endpoint(self, decl: Any) -> Any:
        declared = super()._seed_endpoint(decl)

        async def seed_session(request: Request, body: dict[str, Any] | None = None) -> HTTPResponse:
            await declared(request, body)
            return _json({"tools": self.model_tools})  # the MCP server's tools, not the (no) declared ones

        return seed_session


if __name__ == "__main__":
    McpToolsEnvironment.run_webserver()
