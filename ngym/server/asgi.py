"""One HTTP request into an ASGI app without a socket: the scope, and the answer collected."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from starlette.types import ASGIApp, Message, Scope

from ngym.server.http import Cookies, Headers, set_cookies


class IncompleteAnswer(Exception):
    """The app failed after it had started answering, or ended without a complete answer (over
    HTTP the connection would drop). Callers turn it into
    :class:`ngym.errors.RemoteProtocolError` with the URL."""


@functools.lru_cache(maxsize=1024)
def server_of(base_url: str) -> tuple[str, int]:
    """``http://host:port`` -> ``(host, port)``, parsed once per URL, not per request."""
    host, _, port = base_url.rpartition("//")[2].rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 80


def scope_for(base_url: str, method: str, path: str, headers: Headers) -> dict[str, Any]:
    """The ASGI scope of ``method path`` (with its query string) sent to ``base_url``."""
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
        "server": server_of(base_url),
        "state": {},
    }


async def collect(app: ASGIApp, scope: Scope, body: bytes | None) -> tuple[int, bytes, Cookies]:
    """Run ``app`` on one request; (status, body, cookies it set)."""
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
        raise IncompleteAnswer(f"{type(e).__name__}: {e}") from e
    if not finished:
        raise IncompleteAnswer("the server ended the request without a complete answer")
    return status, chunks[0] if len(chunks) == 1 else b"".join(chunks), set_cookies(response_headers)
