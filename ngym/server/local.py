"""Calls between servers that share a process, without a socket.

When several servers are hosted by one process (``colocate: true``, see :mod:`ngym.server.host`),
each registers its app under its base URL. :class:`~ngym.server.client.ServerClient` then hands a
request for that URL straight to the app: the same body bytes, cookies, validation, status codes
and errors as over HTTP, minus the socket, the HTTP parser and the client's connection pool. JSON
routes take the fast path (:mod:`ngym.server.fastpath`), the rest the app's complete ASGI stack.
Every server stays reachable over HTTP from other processes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from starlette.types import ASGIApp, Message

from ngym.server.fastpath import FastPathApp, Headers, set_cookies

_APPS: dict[str, ASGIApp] = {}


class LocalCallError(Exception):
    """The in-process app failed after it had started answering (a broken response)."""


def register(base_url: str, app: ASGIApp) -> None:
    """Serve requests for ``base_url`` (``http://host:port``) in this process with ``app``."""
    _APPS[base_url.rstrip("/")] = app


def unregister(base_url: str) -> None:
    _APPS.pop(base_url.rstrip("/"), None)


def app_for(base_url: str) -> ASGIApp | None:
    return _APPS.get(base_url) if _APPS else None


@functools.lru_cache(maxsize=1024)
def _server_of(base_url: str) -> tuple[str, int]:
    """``http://host:port`` -> ``(host, port)``, parsed once per URL, not per request."""
    host, _, port = base_url.rpartition("//")[2].rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 80


def scope_for(base_url: str, method: str, path: str, headers: Headers) -> dict[str, Any]:
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": _server_of(base_url),
        "state": {},
    }


async def call(
    app: ASGIApp, base_url: str, method: str, path: str, body: bytes | None, cookies: dict[str, str] | None,
    headers: dict[str, str],
) -> tuple[int, bytes, dict[str, str]]:
    """One request into ``app``: (status, body, cookies it set)."""
    raw: Headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode("latin-1")))
    scope = scope_for(base_url, method, path, raw)
    if isinstance(app, FastPathApp):
        route = app.fast.routes.get((method, scope["path"]))
        if route is not None:
            answer = await app.fast.answer(route, scope, body or b"", cookies or {})
            if isinstance(answer, tuple):
                return answer[0], answer[1], set_cookies(answer[2])
            if answer is not None:  # a streamed response: collect it
                return await _through_stack(answer, scope, b"")
        app = app.app
    return await _through_stack(app, scope, body)


async def _through_stack(app: ASGIApp, scope: dict[str, Any], body: bytes | None) -> tuple[int, bytes, dict[str, str]]:
    request: Message | None = {"type": "http.request", "body": body or b"", "more_body": False}
    status = 500
    response_headers: Headers = []
    chunks: list[bytes] = []
    finished = False

    async def receive() -> Message:
        nonlocal request
        if request is not None:
            message, request = request, None
            return message
        # the caller never disconnects while it waits for the answer
        await asyncio.Future()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, response_headers, finished
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished = True

    try:
        await app(scope, receive, send)
    except Exception as e:  # noqa: BLE001 - over HTTP the connection would drop
        raise LocalCallError(f"{type(e).__name__}: {e}") from e
    if not finished:
        raise LocalCallError("the server ended the request without a complete answer")
    return status, chunks[0] if len(chunks) == 1 else b"".join(chunks), set_cookies(response_headers)
