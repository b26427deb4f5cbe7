"""The error middleware: any exception a handler raises becomes a JSON answer.

``500 {"error": "<Type>: <message>", "server": "<instance>"}``; a
:class:`~ngym.errors.RolloutError` answers with its own status, ``kind`` and ``retryable``. The
fast path (:mod:`ngym.server.fastpath`) answers errors with :func:`error_answer` too.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ngym.errors import RolloutError

log = logging.getLogger("ngym.server")


def error_answer(e: Exception, server_name: str) -> tuple[int, bytes]:
    """Status and JSON body for an exception a handler raised (logged here)."""
    if isinstance(e, RolloutError):
        log.warning("%s: %s", server_name, e)
    else:
        traceback.print_exception(e)
    payload: dict[str, Any] = {"error": f"{type(e).__name__}: {e}", "server": server_name}
    status = 500
    if isinstance(e, RolloutError):
        payload.update(error=str(e), kind=e.kind, retryable=e.retryable)
        status = e.status
    return status, orjson.dumps(payload)


class ErrorMiddleware:
    """Inside the session middleware, so an error response still carries the session cookie."""

    def __init__(self, app: ASGIApp, server_name: str) -> None:
        self.app = app
        self.server_name = server_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001 - every failure must become a response
            if started:
                raise
            status, body = error_answer(e, self.server_name)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
