"""Run a whole deployment in one process for tests: servers are ASGI apps, reached by instance
name through one httpx transport (no sockets).

>>> # deployment = InProcessDeployment({"weather": WeatherServer(...), ...})
>>> # answer = await deployment.client.post("weather_agent", "/run", json=row)
"""

from __future__ import annotations

from typing import Any

import httpx

from ngym.server.base import Server
from ngym.server.client import ServerClient, make_http_client


class RouterTransport(httpx.AsyncBaseTransport):
    """Sends ``http://<name>/...`` to the ASGI app registered under ``name``."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.transports = {name: httpx.ASGITransport(app=app) for name, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no in-process server named {request.url.host!r}", request=request)
        return await transport.handle_async_request(request)


def in_process_client(apps: dict[str, Any]) -> ServerClient:
    """A :class:`ServerClient` whose instance names resolve to in-process ASGI apps."""
    http = make_http_client(transport=RouterTransport(apps))
    return ServerClient({name: f"http://{name}" for name in apps}, http)


def wire(servers: dict[str, Server[Any]]) -> ServerClient:
    """Give every server a client that reaches the others in-process; return that client."""
    apps = {name: server.build_app() for name, server in servers.items()}
    client = in_process_client(apps)
    for server in servers.values():
        server.server_client = client
    return client
