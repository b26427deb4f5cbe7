"""Calls between servers that share a process, without a socket.

When several servers are hosted by one process (``colocate: true``, see :mod:`ngym.server.host`),
each registers its app under its base URL. :class:`~ngym.server.client.ServerClient` then hands a
request for that URL straight to the app (:class:`~ngym.server.transport.LocalTransport`): the
same body bytes, cookies, validation, status codes and errors as over HTTP, minus the socket, the
HTTP parser and the client's connection pool. JSON routes take the fast path
(:meth:`ngym.server.fastpath.FastPathApp.call`), the rest the app's complete ASGI stack. Every
server stays reachable over HTTP from other processes.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from ngym.server.asgi import IncompleteAnswer, collect, scope_for
from ngym.server.fastpath import FastPathApp
from ngym.server.http import Cookies, Headers, cookie_header

__all__ = ["LocalCallError", "app_for", "call", "register", "scope_for", "unregister"]

_APPS: dict[str, ASGIApp] = {}

#: the app failed after it had started answering (a broken response)
LocalCallError = IncompleteAnswer


def register(base_url: str, app: ASGIApp) -> None:
    """Serve requests for ``base_url`` (``http://host:port``) in this process with ``app``."""
    _APPS[base_url.rstrip("/")] = app


def unregister(base_url: str) -> None:
    _APPS.pop(base_url.rstrip("/"), None)


def app_for(base_url: str) -> ASGIApp | None:
    return _APPS.get(base_url) if _APPS else None


async def call(
    app: ASGIApp, base_url: str, method: str, path: str, body: bytes | None, cookies: Cookies | None,
    headers: dict[str, str],
) -> tuple[int, bytes, Cookies]:
    """One request into ``app``: (status, body, cookies it set)."""
    raw: Headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if cookies:
        raw.append((b"cookie", cookie_header(cookies).encode("latin-1")))
    scope = scope_for(base_url, method, path, raw)
    if isinstance(app, FastPathApp):
        return await app.call(scope, body, cookies or {})
    return await collect(app, scope, body)
