"""mcp_tools: tools served by an MCP server (official ``mcp`` SDK, stdio or streamable HTTP), given
to the model as ordinary function tools; the verifier reads the server's final state.

At start-up the environment opens one MCP session (``server``: the shipped ``kv_server.py`` by
default, or any MCP server) and lists its tools; each visible tool becomes a route ``POST /<tool>``
and a function tool in the ``/seed_session`` answer, with the ``namespace_argument`` removed from
its parameters: the environment fills it with the episode's own key, so episodes are isolated in
one server. ``seed`` writes the task's ``initial_state``; ``verify`` reads the namespace with the
``state_tool`` and compares it with ``expected_state``: reward 1.0 iff equal (every key, every value,
no extra key); the verify response lists missing, wrong and extra keys and ``key_accuracy``.

An MCP server's tools are only known once it runs: they are the environment's run-time tools
(``Environment.runtime_tools`` / ``call_runtime_tool``), offered and routed by the contract like
``@tool`` ones; ``teardown`` closes the MCP session.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, Field

from ngym.env import EnvConfig, Environment, ToolError, Verdict, VerifierError
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

    # ---- the MCP server's tools, offered to the model as ordinary tools ------------------------

    async def runtime_tools(self) -> list[dict[str, Any]]:
        return self.model_tools

    async def call_runtime_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        if name not in self.visible:  # listed by the MCP server but hidden from the model
            raise ToolError(f"no tool {name!r}; the tools are {sorted(self.visible)}")
        if not self.state.namespace:
            raise ToolError("no episode: POST /seed_session first and keep its cookie")
        if self.config.namespace_argument in arguments:
            raise ToolError(f"unknown argument {self.config.namespace_argument!r}")
        if self.state.calls >= self.config.max_calls:
            raise ToolError(f"at most {self.config.max_calls} tool calls per task")
        self.state.calls += 1
        return await self._call(name, {**arguments, self.config.namespace_argument: self.state.namespace})

    async def teardown(self) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None:  # the session, and the server process the environment started
            await connection.close()


if __name__ == "__main__":
    McpToolsEnvironment.run_webserver()
