"""The error middleware: any exception a handler raises becomes a JSON answer.

``500 {"error": "<Type>: <message>", "server": "<instance>"}``; a
:class:`~ngym.errors.RolloutError` answers with its own status, ``kind`` and ``retryable``. The
fast path (:mod:`ngym.server.fastpath`) answers errors with :func:`error_answer` too.

:func:`validation_answer` writes the 422 of a body that does not validate, as FastAPI does but
with each error's ``input`` bounded: a 10 MB body is never echoed back.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
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


#: at most this many characters of an invalid input are echoed in a 422
ECHO_LIMIT = 200


def bounded_input(value: Any) -> Any:
    """``value`` as a 422 echoes it: as is when its JSON is short; else the first
    :data:`ECHO_LIMIT` characters of its JSON and how long it was. A value JSON cannot carry
    (NaN, an integer beyond 64 bits for orjson readers, ...) is echoed as its text."""
    encoded = jsonable_encoder(value)
    try:
        text = json.dumps(encoded, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        orjson.dumps(encoded)  # what ngym's own clients read it with: 64-bit integers at most
    except (TypeError, ValueError):
        text = json.dumps(json.dumps(encoded, ensure_ascii=False, allow_nan=True, default=str))
        encoded = json.loads(text)
    if len(text) <= ECHO_LIMIT:
        return encoded
    return f"{text[:ECHO_LIMIT]}... (truncated: {len(text):,} characters)"


def validation_answer(errors: Any) -> bytes:
    """The body of a 422: FastAPI's ``{"detail": [...]}`` (its JSON layout) with every ``input`` bounded."""
    detail = []
    for error in errors:
        error = dict(error)
        if "input" in error:
            error["input"] = bounded_input(error["input"])
        detail.append(error)
    content = {"detail": jsonable_encoder(detail)}
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str).encode()


async def validation_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's handler for :class:`RequestValidationError`, with :func:`validation_answer`."""
    assert isinstance(exc, RequestValidationError)
    return Response(validation_answer(exc.errors()), status_code=422, media_type="application/json")


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
