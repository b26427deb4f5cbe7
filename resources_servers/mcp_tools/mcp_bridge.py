"""A long-lived MCP client session (official ``mcp`` SDK) over stdio or streamable HTTP, and the
conversion of the server's tools into the function tools a model is given.

The session is owned by one background task (the SDK's transports are context managers that must
be entered and left in the same task); any task may call tools on it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent, Tool
from pydantic import BaseModel, Field

SAMPLE_SERVER = Path(__file__).resolve().parent / "kv_server.py"


class McpServerConfig(BaseModel):
    """How to reach the MCP server."""

    transport: Literal["stdio", "streamable_http"] = "stdio"
    command: str | None = Field(None, description="program that runs the server (stdio: always; streamable_http: "
                                                  "optional, started by the environment). Default: this Python")
    args: list[str] = Field(default_factory=list, description="its arguments (default: the sample kv_server.py)")
    env: dict[str, str] | None = None
    url: str | None = Field(None, description="streamable_http: the server's endpoint, e.g. http://127.0.0.1:8765/mcp")
    startup_timeout_s: float = Field(30.0, gt=0)
    call_timeout_s: float = Field(30.0, gt=0)


class McpError(Exception):
    """The MCP server could not be reached or answered with a protocol error."""


def model_tool(tool: Tool, hidden_arguments: set[str]) -> dict[str, Any]:
    """The Responses-API function tool for an MCP tool, without the arguments the environment fills."""
    schema = dict(tool.inputSchema or {"type": "object", "properties": {}})
    properties = {k: {kk: vv for kk, vv in v.items() if kk != "title"}
                  for k, v in dict(schema.get("properties") or {}).items() if k not in hidden_arguments}
    required = [k for k in schema.get("required") or [] if k not in hidden_arguments]
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        parameters["required"] = required
    return {"type": "function", "name": tool.name, "description": tool.description or "",
            "parameters": parameters, "strict": False}


def result_json(result: CallToolResult) -> dict[str, Any]:
    """What the model sees of a tool's result: ``{"result": ...}`` or ``{"error": "..."}``."""
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    if result.isError:
        return {"error": text or "the tool failed"}
    structured = result.structuredContent
    if isinstance(structured, dict) and set(structured) == {"result"}:
        return {"result": structured["result"]}
    return {"result": structured if structured is not None else text}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class McpConnection:
    """One client session to the configured server, for the life of the environment."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.session: ClientSession | None = None
        self.tools: list[Tool] = []
        self.process: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def _command(self) -> list[str]:
        return [self.config.command or sys.executable, *(self.config.args or [str(SAMPLE_SERVER)])]

    async def _spawn_http_server(self) -> str:
        url = self.config.url or ""
        port = urlparse(url).port if url else None
        if port is None:
            port = _free_port()
            url = f"http://127.0.0.1:{port}/mcp"
        command = self._command()
        if not self.config.args:
            command += ["--transport", "streamable-http", "--port", str(port)]
        self.process = await asyncio.create_subprocess_exec(*command, env=self.config.env,
                                                            stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + self.config.startup_timeout_s
        host = str(urlparse(url).hostname or "127.0.0.1")
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise McpError(f"the MCP server {command} exited with status {self.process.returncode} at start-up")
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=0.5).close()
                return url
            await asyncio.sleep(0.1)
        raise McpError(f"the MCP server {command} did not listen on {host}:{port} within "
                       f"{self.config.startup_timeout_s:g} s")

    async def _own(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                if self.config.transport == "stdio":
                    command = self._command()
                    params = StdioServerParameters(command=command[0], args=command[1:], env=self.config.env)
                    read, write = await stack.enter_async_context(stdio_client(params))
                else:
                    url = self.config.url
                    if self.config.command is not None or not url:
                        url = await self._spawn_http_server()
                    read, write, _ = await stack.enter_async_context(streamable_http_client(url))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = (await session.list_tools()).tools
                self.session = session
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:  # noqa: BLE001 - reported to start() / call()
            self._error = e
        finally:
            self.session = None
            self._ready.set()

    async def start(self) -> list[Tool]:
        """Connect (starting the server where configured) and list its tools."""
        self._task = asyncio.create_task(self._own())
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.startup_timeout_s)
        except TimeoutError:
            await self.close()
            raise McpError(f"no MCP session within {self.config.startup_timeout_s:g} s ({self._command()})") from None
        if self.session is None:
            raise McpError(f"cannot open the MCP session ({self.config.transport}, {self.config.url or self._command()}): "
                           f"{self._error!r}")
        return self.tools

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        if self.session is None:
            raise McpError(f"the MCP session is closed ({self._error!r})")
        try:
            return await self.session.call_tool(name, arguments,
                                                read_timeout_seconds=timedelta(seconds=self.config.call_timeout_s))
        except Exception as e:
            raise McpError(f"MCP call {name} failed: {type(e).__name__}: {e}") from e

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 10)
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.process.wait(), 5)
            if self.process.returncode is None:
                self.process.kill()
