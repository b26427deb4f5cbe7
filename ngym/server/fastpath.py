"""The fast path: JSON routes answered without the ASGI middleware stack, the same answer as FastAPI.

Most requests between ngym servers are ``POST`` of a JSON body to a route whose handler takes one
pydantic model (or dict) and maybe the ``Request``: tools, ``/seed_session``, ``/verify``,
``/run``, ``/v1/responses``. For those, :class:`FastPath` validates the body bytes into the
handler's model, reads the session cookie as :class:`~ngym.server.sessions.SessionMiddleware`
does, calls the handler, and serialises the result as FastAPI would (its response model with
``exclude_none`` and the other options; a returned ``Response`` as is; errors as
:class:`~ngym.server.middleware.ErrorMiddleware` writes them). The answer is the same bytes on the
wire; what is skipped is five layers of middleware, routing, and dependency solving per request.

What the middleware would do comes from :class:`FastPathSettings`, given by whoever built the
stack (:meth:`ngym.server.base.Server.build_app`); which routes qualify comes from each
endpoint's own Python signature (no FastAPI internals). Everything else takes the app's complete
stack: other middleware, dependencies, path/query/header parameters, sync handlers, custom
exception handlers, a body limit, and a body that does not validate (so FastAPI writes its own
422). ``tests/test_fastpath.py`` checks that both paths answer alike, route by route.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ngym.server.asgi import collect
from ngym.server.auth import TOKEN_HEADER
from ngym.server.http import JSON_TYPE, Cookies, Headers, is_json_body, parse_cookie_header, set_cookies
from ngym.server.middleware import error_answer
from ngym.server.sessions import SESSION_ID_KEY, SessionCookie, foreign_session, new_session_id, replica_lost_body

_TOKEN_HEADER = TOKEN_HEADER.encode()


@dataclass(frozen=True, slots=True)
class FastPathSettings:
    """What the app's ngym middleware does, so the fast path can do the same without it."""

    #: the instance name errors carry (:class:`~ngym.server.middleware.ErrorMiddleware`)
    server_name: str
    #: the session cookie (:class:`~ngym.server.sessions.SessionMiddleware`); None: no sessions
    session: SessionCookie | None = None
    #: the deployment token required in ``x-ngym-token`` (:class:`~ngym.server.auth.TokenMiddleware`)
    token: str | None = None
    #: False when the app has anything the fast path cannot reproduce: every request takes the full stack
    enabled: bool = True


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


#: the exception handlers every FastAPI app has; an app with others takes the full stack
DEFAULT_HANDLERS = frozenset({HTTPException, RequestValidationError, WebSocketRequestValidationError})


def bypassable(app: FastAPI) -> bool:
    """Whether the fast path may answer for ``app`` as it is *before* ngym adds its middleware: no
    middleware of the author's own, no custom exception handlers, no body limit."""
    return (
        not app.user_middleware
        and all(key in DEFAULT_HANDLERS for key in app.exception_handlers)
        and getattr(app, "max_body_size", None) is None
    )


class FastPath:
    """The routes of one FastAPI app that can be answered directly."""

    def __init__(self, app: FastAPI, settings: FastPathSettings) -> None:
        self.server_name = settings.server_name
        self.session = settings.session
        self.token = settings.token.encode() if settings.token else None
        self.routes: dict[tuple[str, str], FastRoute] = {}
        if settings.enabled:
            for route in app.routes:
                if isinstance(route, APIRoute):
                    fast = fast_route(route)
                    if fast is not None:
                        for method in route.methods or ():
                            self.routes[(method, route.path)] = fast

    def token_ok(self, headers: Headers) -> bool:
        if self.token is None:
            return True
        given = next((v for k, v in headers if k == _TOKEN_HEADER), b"")
        return hmac.compare_digest(given, self.token)

    async def answer(
        self, route: FastRoute, scope: Scope, body: bytes, cookies: Cookies
    ) -> tuple[int, bytes, Headers] | Response | None:
        """(status, body, headers); or a response to run as an ASGI app (a streaming one); or None
        when the request must take the full stack instead."""
        kwargs: dict[str, Any] = {}
        if route.body is not None and route.body_name is not None:
            if body:
                try:
                    kwargs[route.body_name] = route.body.validate_json(body)
                except ValidationError:
                    return None  # FastAPI writes its own 422
            elif route.body_required:
                return None
            else:
                kwargs[route.body_name] = None
        headers: Headers = []
        if self.session is not None:
            value = cookies.get(self.session.name)
            sid = self.session.verify(value) if value else None
            if sid is not None and foreign_session(sid):
                content = replica_lost_body(self.session.name, sid)
                return 503, content, [JSON_TYPE, (b"content-length", str(len(content)).encode())]
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
            status, content = error_answer(e, self.server_name)
        headers.append(JSON_TYPE)
        headers.append((b"content-length", str(len(content)).encode()))
        return status, content, headers


class FastPathApp:
    """The ASGI app a server serves: its FastAPI app (with the whole middleware stack), with
    :class:`FastPath` in front. Attributes of the FastAPI app pass through."""

    def __init__(self, app: FastAPI, settings: FastPathSettings) -> None:
        self.app = app
        self.settings = settings
        self.fast = FastPath(app, settings)

    def __getattr__(self, name: str) -> Any:  # routes, openapi(), state... of the FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.fast.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if route is None or not self.fast.token_ok(scope["headers"]) or not is_json_body(scope["headers"]):
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

    async def call(self, scope: Scope, body: bytes | None, cookies: Cookies) -> tuple[int, bytes, Cookies]:
        """One request from this process (:mod:`ngym.server.local`): (status, body, cookies it
        set), answered as over HTTP. Raises :class:`~ngym.server.asgi.IncompleteAnswer` where
        the connection would drop."""
        route = self.fast.routes.get((scope["method"], scope["path"]))
        if route is not None and self.fast.token_ok(scope["headers"]):
            answer = await self.fast.answer(route, scope, body or b"", cookies)
            if isinstance(answer, tuple):
                return answer[0], answer[1], set_cookies(answer[2])
            if answer is not None:  # a streamed response: collect it
                return await collect(answer, scope, b"")
        return await collect(self.app, scope, body)


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


def fast_route(route: APIRoute) -> FastRoute | None:
    """The fast-path form of a route, or None when the route needs FastAPI's full stack.

    Read from the route's public settings and the endpoint's own signature: parameters may be one
    JSON body (a pydantic model or a dict, optional with ``= None``) and the ``Request``; anything
    else (a scalar is a query parameter; ``Depends``, ``Body()``, ``Query()``... defaults;
    ``Annotated``; other injected types) leaves the route to FastAPI.
    """
    if (
        "{" in route.path
        or route.dependencies
        or not isinstance(route.response_class, DefaultPlaceholder)
        or not inspect.iscoroutinefunction(route.endpoint)
        or route.response_model_include is not None
        or route.response_model_exclude is not None
    ):
        return None
    try:
        signature = inspect.signature(route.endpoint, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # FastAPI resolves what it can; leave it to FastAPI
        return None
    body_name: str | None = None
    body: TypeAdapter[Any] | None = None
    required = False
    request_name: str | None = None
    for name, param in signature.parameters.items():
        annotation = param.annotation
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None
        if annotation is Request:
            if param.default is not param.empty or request_name is not None:
                return None
            request_name = name
            continue
        if body_name is not None or not _is_json_body_type(annotation, optional=param.default is None):
            return None
        if param.default is param.empty:
            required = True
        elif param.default is not None:
            return None  # Depends(), Body(), Query(), a default value...
        body_name, body = name, TypeAdapter(annotation)
    return FastRoute(
        endpoint=route.endpoint,
        body_name=body_name,
        body=body,
        body_required=required,
        request_name=request_name,
        status_code=route.status_code or 200,
        response=TypeAdapter(route.response_model) if route.response_model is not None else None,
        dump={
            "by_alias": bool(route.response_model_by_alias),
            "exclude_unset": route.response_model_exclude_unset,
            "exclude_defaults": route.response_model_exclude_defaults,
            "exclude_none": route.response_model_exclude_none,
        },
    )


def _is_json_body_type(annotation: Any, optional: bool) -> bool:
    """A pydantic model or a ``dict`` (``X | None`` when the default is None): what FastAPI reads
    from the JSON body."""
    if optional and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != len(typing.get_args(annotation)) - 1 or len(args) != 1:
            return False
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return annotation is dict or typing.get_origin(annotation) is dict
