"""The fast path: JSON routes answered without the ASGI middleware stack, the same answer as FastAPI.

Most requests between ngym servers are ``POST`` of a JSON body to a route whose handler takes one
pydantic model (or dict) and maybe the ``Request``: tools, ``/seed_session``, ``/verify``,
``/run``, ``/v1/responses``. For those, :class:`FastPath` validates the body bytes into the
handler's model, reads the session cookie as :class:`~ngym.server.sessions.SessionMiddleware`
does, calls the handler, and serialises the result as FastAPI would (its response model with
``exclude_none`` and the other options; a returned ``Response`` as is; errors as
:class:`~ngym.server.base.ErrorMiddleware` writes them). The answer is the same bytes on the wire;
what is skipped is five layers of middleware, routing, and dependency solving per request.

Everything else takes the app's complete stack: other middleware, dependencies, path/query/header
parameters, sync handlers, custom exception handlers, a body limit, and a body that does not
validate (so FastAPI writes its own 422). ``tests/test_fastpath.py`` checks that both paths answer
alike, route by route.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ngym.server.sessions import SESSION_ID_KEY, SessionCookie, SessionMiddleware, new_session_id

Headers = list[tuple[bytes, bytes]]
JSON_TYPE = (b"content-type", b"application/json")


@dataclass(slots=True)
class FastRoute:
    endpoint: Callable[..., Awaitable[Any]]
    body_name: str | None
    body: TypeAdapter[Any] | None
    body_required: bool
    request_name: str | None
    status_code: int
    response: TypeAdapter[Any] | None
    dump: dict[str, Any] = field(default_factory=dict)


class FastPath:
    """The routes of one FastAPI app that can be answered directly."""

    def __init__(self, app: FastAPI) -> None:
        self.server_name = ""
        self.session: SessionCookie | None = None
        self.token: bytes | None = None
        self.routes: dict[tuple[str, str], FastRoute] = {}
        self._compile(app)

    def _compile(self, app: FastAPI) -> None:
        from ngym.server.auth import TokenMiddleware
        from ngym.server.base import ErrorMiddleware

        for middleware in app.user_middleware:
            if middleware.cls is SessionMiddleware:
                self.session = SessionCookie(middleware.kwargs["cookie_name"], middleware.kwargs.get("secret"))
            elif middleware.cls is ErrorMiddleware:
                self.server_name = middleware.kwargs["server_name"]
            elif middleware.cls is TokenMiddleware:
                self.token = str(middleware.kwargs["token"]).encode()
            else:
                return  # middleware we do not know: every request takes the full stack
        if any(key not in DEFAULT_HANDLERS for key in app.exception_handlers):
            return
        if getattr(app, "max_body_size", None) is not None:
            return
        for route in app.routes:
            if isinstance(route, APIRoute):
                try:
                    fast = _fast_route(route)
                except (AttributeError, TypeError, ValueError):  # another FastAPI than we know: full stack
                    fast = None
                if fast is not None:
                    for method in route.methods:
                        self.routes[(method, route.path)] = fast

    def token_ok(self, headers: Headers) -> bool:
        if self.token is None:
            return True
        given = next((v for k, v in headers if k == b"x-ngym-token"), b"")
        return hmac.compare_digest(given, self.token)

    async def answer(
        self, route: FastRoute, scope: Scope, body: bytes, cookies: dict[str, str]
    ) -> tuple[int, bytes, Headers] | Response | None:
        """(status, body, headers); or a response to run as an ASGI app (a streaming one); or None
        when the request must take the full stack instead."""
        kwargs: dict[str, Any] = {}
        if route.body is not None:
            if body:
                try:
                    kwargs[route.body_name] = route.body.validate_json(body)  # type: ignore[index]
                except ValidationError:
                    return None  # FastAPI writes its own 422
            elif route.body_required:
                return None
            else:
                kwargs[route.body_name] = None  # type: ignore[index]
        headers: Headers = []
        if self.session is not None:
            value = cookies.get(self.session.name)
            sid = self.session.verify(value) if value else None
            if sid is None:
                sid = new_session_id()
                headers.append((b"set-cookie", self.session.header(sid)))
            scope["session"] = {SESSION_ID_KEY: sid}
            scope.setdefault("state", {})[SESSION_ID_KEY] = sid
        if route.request_name is not None:
            kwargs[route.request_name] = Request(scope, _body_once(body))  # request.body() works as usual
        try:
            result = await route.endpoint(**kwargs)
            if isinstance(result, Response):
                if not hasattr(result, "body"):  # streamed: the caller runs it
                    result.raw_headers.extend(headers)
                    return result
                return result.status_code, bytes(result.body), [*result.raw_headers, *headers]
            if route.response is not None:
                value = route.response.validate_python(result, from_attributes=True)
                content = route.response.dump_json(value, **route.dump)
            else:
                content = orjson.dumps(jsonable_encoder(result))
            status = route.status_code
        except HTTPException as e:
            status, content = e.status_code, orjson.dumps({"detail": e.detail})
            headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (e.headers or {}).items())
        except Exception as e:  # noqa: BLE001 - as ErrorMiddleware does
            from ngym.server.base import error_answer

            status, content = error_answer(e, self.server_name)
        headers.append(JSON_TYPE)
        headers.append((b"content-length", str(len(content)).encode()))
        return status, content, headers


class FastPathApp:
    """The ASGI app a server serves: its FastAPI app, with :class:`FastPath` in front."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.fast = FastPath(app)

    def __getattr__(self, name: str) -> Any:  # routes, openapi(), state... of the FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.fast.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if route is None or not self.fast.token_ok(scope["headers"]) or not _json_or_none(scope["headers"]):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        cookie_header = next((v for k, v in scope["headers"] if k == b"cookie"), None)
        answer = await self.fast.answer(route, scope, body, parse_cookie_header(cookie_header))
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        status, content, headers = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _json_or_none(headers: Headers) -> bool:
    """FastAPI parses a body as JSON when the content type is absent, ``application/json`` or
    ``application/*+json``; other bodies are its business (it validates the raw bytes)."""
    value = next((v for k, v in headers if k == b"content-type"), b"")
    kind = value.split(b";", 1)[0].strip().lower()
    return not kind or kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def parse_cookie_header(value: bytes | None) -> dict[str, str]:
    """``a=1; b=2`` -> ``{"a": "1", "b": "2"}`` (values as sent; quoted values lose their quotes)."""
    if not value:
        return {}
    cookies = {}
    for part in value.decode("latin-1").split(";"):
        name, sep, val = part.partition("=")
        if sep:
            cookies[name.strip()] = val.strip().strip('"')
    return cookies


def set_cookies(headers: Headers) -> dict[str, str]:
    """The cookies a response sets, by name."""
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name == b"set-cookie":
            pair = value.decode("latin-1").split(";", 1)[0]
            key, sep, val = pair.partition("=")
            if sep:
                cookies[key.strip()] = val.strip().strip('"')
    return cookies


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _body_once(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:  # what a server sees once the client has sent everything and waits
            await asyncio.Future()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


#: the exception handlers every FastAPI app has; an app with others takes the full stack
DEFAULT_HANDLERS = frozenset({HTTPException, RequestValidationError, WebSocketRequestValidationError})


def _fast_route(route: APIRoute) -> FastRoute | None:
    dependant = route.dependant
    special = (
        "websocket_param_name", "http_connection_param_name", "response_param_name",
        "background_tasks_param_name", "security_scopes_param_name",
    )
    if (
        "{" in route.path
        or route.dependencies
        or dependant.dependencies
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or len(dependant.body_params) > 1
        or any(getattr(dependant, name, None) is not None for name in special)
        or not isinstance(route.response_class, DefaultPlaceholder)
        or not inspect.iscoroutinefunction(route.endpoint)
        or route.response_model_include is not None
        or route.response_model_exclude is not None
    ):
        return None
    body_name, body, required = None, None, False
    if dependant.body_params:
        param = dependant.body_params[0]
        info = param.field_info
        if getattr(info, "embed", False):
            return None
        body_name, body, required = param.name, TypeAdapter(info.annotation), info.is_required()
    return FastRoute(
        endpoint=route.endpoint,
        body_name=body_name,
        body=body,
        body_required=required,
        request_name=getattr(dependant, "request_param_name", None),
        status_code=route.status_code or 200,
        response=TypeAdapter(route.response_model) if route.response_model is not None else None,
        dump={
            "by_alias": bool(route.response_model_by_alias),
            "exclude_unset": route.response_model_exclude_unset,
            "exclude_defaults": route.response_model_exclude_defaults,
            "exclude_none": route.response_model_exclude_none,
        },
    )
