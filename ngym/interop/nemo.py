"""NeMo Gym v0.2.1's environment-author API on ngym's :class:`~ngym.env.resources.ResourcesServer`.

The reference's servers are pydantic models: class attributes declared with
``Field(default_factory=...)`` are instance values, ``model_post_init`` runs after construction,
construction takes keywords (``cls(config=..., server_client=...)``), undeclared ``_private``
attributes may be set in ``model_post_init``. :class:`PydanticResourcesServer` is a real pydantic
model *and* an ngym resources server, so all of that holds as written.

What ngym adds (docs/interop.md):

* **The verify guard.** A reference environment that reads an attribute it never set (a verifier
  ``model_post_init`` did not build) often catches the ``AttributeError`` in a broad ``except``
  and answers ``200`` with reward 0 — a silent wrong reward. Every failed attribute lookup on the
  server during ``/verify`` is recorded, and such a verify answers a typed ``verifier_error``
  (HTTP 500) naming the attribute, whatever reward it computed.
* **Recorded rows re-verify.** The request models ignore unknown keys, as the reference's do, so
  ``VerifyResponse(**body.model_dump(), reward=...)`` works on a row that already carries
  ``reward`` (or any other key the response adds). The row's other keys (task fields the
  environment does not declare) are put back into the answer, as ngym keeps task fields.
* **Replies like aiohttp's.** :class:`ServerClient` answers :class:`AioReply`: ``await
  resp.json()``, ``await resp.read()``, ``resp.content.read()``, ``.ok``, ``.status``,
  ``raise_for_status()`` — and ngym's ``.status_code`` / ``.content`` beside them.
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response as HTTPResponse
from fastapi.routing import APIRoute
from multidict import CIMultiDict, CIMultiDictProxy
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage
from yarl import URL

from ngym.config.schema import HeadServerConfig, ServerConfig
from ngym.env.resources import ResourcesServer
from ngym.errors import ConfigError, FailureKind, RolloutError
from ngym.server import client as ngym_client
from ngym.server.transport import Transport
from ngym.config.instance import ServerInstance
from ngym.server.fastpath import FastPathApp
from ngym.server.middleware import bounded_input
from ngym.server.sessions import SESSION_ID_KEY, SessionCookie, SessionMiddleware
from ngym.wire.responses import FunctionCall, FunctionCallOutput, FunctionTool, Message, OutputText, Reasoning, Response

# ---- replies ---------------------------------------------------------------------------------


class Body(bytes):
    """A reply's body: ``bytes`` (ngym's ``reply.content``) with aiohttp's ``await content.read()``."""

    async def read(self, n: int = -1) -> bytes:
        return bytes(self) if n < 0 else bytes(self[:n])


class AioReply:
    """An answer from another server, readable as ngym reads it (``status_code``, ``content``,
    ``text``) and as reference code reads aiohttp's ``ClientResponse`` (``status``, ``ok``, ``await
    json()``, ``await read()``, ``await text()``, ``content.read()``, ``raise_for_status()``)."""

    __slots__ = ("status", "content", "url", "cookies", "method")

    def __init__(self, reply: ngym_client.Reply, method: str = "POST") -> None:
        self.status = reply.status_code
        self.content = Body(reply.content)
        self.url = reply.url
        self.method = method
        self.cookies: SimpleCookie = SimpleCookie()
        for name, value in reply.cookies.items():
            self.cookies[name] = value

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def reason(self) -> str:
        return "OK" if self.ok else "Error"

    async def read(self) -> bytes:
        return bytes(self.content)

    async def text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding, "replace")

    async def json(self, **_: Any) -> Any:
        return orjson.loads(bytes(self.content))

    def release(self) -> None:
        return None

    def raise_for_status(self) -> None:
        """aiohttp's: ``ClientResponseError`` for 4xx/5xx (``response_content`` holds the body)."""
        if self.ok:
            return
        url = URL(self.url)
        info = aiohttp.RequestInfo(url, self.method, CIMultiDictProxy(CIMultiDict()), url)
        error = aiohttp.ClientResponseError(
            info, (), status=self.status, message=f"{self.url} answered HTTP {self.status}: {self.content[:500]!r}"
        )
        error.response_content = bytes(self.content)  # type: ignore[attr-defined]  # as the reference sets it
        raise error


def _cookie_values(cookies: Any) -> dict[str, str] | None:
    """Cookies as ``name -> value``: a dict, a ``SimpleCookie`` or aiohttp's jar-like mapping."""
    if not cookies:
        return None
    return {str(k): str(getattr(v, "value", v)) for k, v in dict(cookies).items()}


class ServerClient(ngym_client.ServerClient):
    """ngym's server client, answering :class:`AioReply`; built from a deployment config or, as in
    the reference, ``ServerClient(head_server_config=..., global_config_dict=...)``."""

    def __init__(
        self,
        urls: dict[str, str] | None = None,
        http: Any = None,
        *,
        config: DictConfig | None = None,
        head_server_config: HeadServerConfig | None = None,
        global_config_dict: DictConfig | None = None,
        timeout_s: float = 900.0,
        transport: Transport | None = None,
    ) -> None:
        config = config if config is not None else global_config_dict
        if urls is None:
            urls = ngym_client.instance_urls(config) if config is not None else {}
        super().__init__(urls, http, config=config, timeout_s=timeout_s, transport=transport)
        self.head_server_config = head_server_config or HeadServerConfig()

    @property
    def global_config_dict(self) -> DictConfig | None:
        return self.config

    @classmethod
    def from_config(cls, config: DictConfig, http: Any = None) -> ServerClient:
        return cls(None, http, config=config)

    async def request(  # the reference's signature (server_name, url_path, method)
        self, server_name: str, url_path: str, method: str, json: Any = None, cookies: Any = None,
        timeout: Any = None, **_: Any,
    ) -> AioReply:
        if isinstance(json, BaseModel):
            json = json.model_dump(mode="json", exclude_unset=True)
        seconds = getattr(timeout, "total", timeout)
        if method.upper() == "GET":
            reply = await super().get(server_name, url_path, cookies=_cookie_values(cookies))
        else:
            reply = await ngym_client.ServerClient.post(
                self, server_name, url_path, json=json, cookies=_cookie_values(cookies),
                timeout=float(seconds) if seconds else None,
            )
        return AioReply(reply, method.upper())

    async def post(  # type: ignore[override]
        self, server_name: str, url_path: str, json: Any = None, cookies: Any = None, timeout: Any = None, **kw: Any
    ) -> AioReply:
        return await self.request(server_name, url_path, "POST", json=json, cookies=cookies, timeout=timeout, **kw)

    async def get(  # type: ignore[override]
        self, server_name: str, url_path: str, cookies: Any = None, **kw: Any
    ) -> AioReply:
        return await self.request(server_name, url_path, "GET", cookies=cookies, **kw)


async def get_response_json(response: Any) -> Any:
    """The JSON body of a reply (reference: ``orjson.loads(await response.read())``)."""
    return orjson.loads(await response.read())


async def raise_for_status(response: Any) -> None:
    """Raise ``aiohttp.ClientResponseError`` (with ``response_content``) for a 4xx/5xx reply."""
    response.raise_for_status()


# ---- responses ---------------------------------------------------------------------------------


class CallableText(str):
    """A ``str`` that is also callable: ``response.output_text`` (the openai SDK's property) and
    ``response.output_text()`` (ngym's method) both give the text."""

    def __call__(self) -> str:
        return str(self)


def _foreign_models_as_dicts(value: Any) -> Any:
    """Pydantic models of another package (the openai SDK's ``FunctionTool``...) as plain dicts, so
    ngym's types validate them as the reference's openai-based types did."""
    if isinstance(value, list):
        return [_foreign_models_as_dicts(v) for v in value]
    if isinstance(value, BaseModel) and not type(value).__module__.startswith("ngym."):
        return value.model_dump(mode="json", exclude_none=True)
    return value


class NeMoGymResponseOutputMessage(Message):
    """An output message with the reference's defaults (``role="assistant"``, ``status="completed"``,
    ``type="message"``); an ngym :class:`~ngym.wire.responses.Message`."""

    role: Literal["user", "assistant", "system", "developer"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] | None = "completed"
    type: Literal["message"] | None = "message"


def _output_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type") or ("message" if "role" in value or "content" in value else None))
    return str(getattr(value, "type", None) or "message")


#: an output item as the reference parses it: messages are :class:`NeMoGymResponseOutputMessage`
NeMoGymOutputItem = Annotated[
    Annotated[NeMoGymResponseOutputMessage, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[Reasoning, Tag("reasoning")],
    Discriminator(_output_kind),
]


class NeMoGymResponse(Response):
    """ngym's :class:`~ngym.wire.responses.Response` whose ``output_text`` reads as the openai SDK's
    property (the ``output_text`` parts of every output message, concatenated), and whose output
    messages parse as :class:`NeMoGymResponseOutputMessage` (as the reference's do, so responses
    built in tests compare equal to parsed ones)."""

    # required as in the openai SDK's Response (the reference's base): a judge's `{}` is a ValidationError
    id: str
    created_at: float
    model: str
    object: Literal["response"]
    output: list[NeMoGymOutputItem]  # type: ignore[assignment]  # a subclass's items
    parallel_tool_calls: bool
    tool_choice: str | dict[str, Any]
    tools: list[FunctionTool]

    @model_validator(mode="before")
    @classmethod
    def _accept_openai_models(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _foreign_models_as_dicts(v) if k in ("output", "tools") else v for k, v in data.items()}
        return data

    @property  # a property where ngym has a method: both readings work (CallableText)
    def output_text(self) -> CallableText:
        texts = [
            part.text
            for item in self.output
            if isinstance(item, Message) and not isinstance(item.content, str)
            for part in item.content
            if isinstance(part, OutputText)
        ]
        return CallableText("".join(texts))


# ---- servers -----------------------------------------------------------------------------------

#: attribute names read on a server and not found, during the current ``/verify``
_missing_reads: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("ngym_missing_reads", default=None)


class PydanticResourcesServer(BaseModel, ResourcesServer):
    """A resources server that is a pydantic model, as the reference's ``SimpleResourcesServer``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: ServerConfig  # type: ignore[assignment]  # the reference's configs need no domain in tests
    server_client: ngym_client.ServerClient

    __hash__ = object.__hash__  # bound methods (routes) of a model must stay hashable

    @field_validator("server_client", mode="before")
    @classmethod
    def _aio_replies(cls, value: Any) -> Any:
        """An ngym client given by ngym's tooling becomes one answering aiohttp-style replies."""
        if type(value) is ngym_client.ServerClient:
            return ServerClient(value.urls, config=value.config, timeout_s=value.timeout_s, transport=value.transport)
        return value

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # pydantic's: private attributes
        except AttributeError:
            reads = _missing_reads.get()
            if reads is not None and not (name.startswith("__") and name.endswith("__")):
                reads.append(name)
            raise

    @classmethod
    def config_type(cls) -> type[ServerConfig]:
        found = cls.model_fields["config"].annotation
        return found if isinstance(found, type) and issubclass(found, ServerConfig) else ServerConfig

    @classmethod
    def from_instance(cls, instance: ServerInstance, global_config: DictConfig) -> typing.Self:
        """Built with keywords, as a pydantic model is (``cls(config=..., server_client=...)``)."""
        try:
            config = cls.config_type().model_validate({**instance.settings, "name": instance.name})
        except ValidationError as e:
            problems = "; ".join(
                f"{' -> '.join(str(p) for p in (instance.path, *err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"Invalid settings for {cls.__name__}: {problems}. Fix the config file.") from None
        return cls(config=config, server_client=ServerClient.from_config(global_config))

    def setup_webserver(self) -> FastAPI:
        """The routes; called alone (as the reference's tests do, ``TestClient(server.setup_webserver())``)
        the app also carries the session middleware, which :meth:`build_app` adds otherwise."""
        app = super().setup_webserver()
        for route in list(app.router.routes):
            if isinstance(route, APIRoute) and route.path == "/verify":
                app.router.routes.remove(route)
        app.post("/verify")(guarded_verify(self, self.verify))
        if not _building.get():
            cookie_name = f"{type(self).__name__}___{self.config.name}"
            app.add_middleware(SessionMiddleware, cookie_name=cookie_name)
            app.add_middleware(ResendSessionCookie, cookie_name=cookie_name)
        return app

    def build_app(self) -> FastPathApp:
        token = _building.set(True)
        try:
            return super().build_app()
        finally:
            _building.reset(token)


#: True while :meth:`PydanticResourcesServer.build_app` runs (it adds the session middleware itself)
_building: contextvars.ContextVar[bool] = contextvars.ContextVar("ngym_building_app", default=False)


class ResendSessionCookie:
    """The reference's cookie habit, for an app built by ``setup_webserver()`` alone: every response
    carries the session cookie (ngym's servers set it once per session)."""

    def __init__(self, app: ASGIApp, cookie_name: str) -> None:
        self.app = app
        self.cookie = SessionCookie(cookie_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start" and "session" in scope:
                headers = list(message.get("headers", []))
                prefix = f"{self.cookie.name}=".encode("latin-1")
                if not any(k == b"set-cookie" and v.startswith(prefix) for k, v in headers):
                    headers.append((b"set-cookie", self.cookie.header(scope["session"][SESSION_ID_KEY])))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def guarded_verify(server: PydanticResourcesServer, handler: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """``handler`` (the environment's ``verify``) as a route that

    1. drops from the row the keys only the verify *response* declares (``reward``, a judge's
       evaluations...): outputs of an earlier verification are not inputs, and
       ``VerifyResponse(**body.model_dump(), reward=...)`` must not meet them twice — even when the
       request model keeps unknown keys (``extra="allow"``);
    2. answers a typed ``verifier_error`` when the handler read an attribute of the server that was
       never set;
    3. puts the row's keys the models do not declare back into the answer (ngym keeps task fields).
    """
    signature = inspect.signature(handler)
    hints = typing.get_type_hints(handler)
    body_name, body_type = next(
        ((name, t) for name, t in hints.items() if isinstance(t, type) and issubclass(t, BaseModel)), (None, None)
    )
    request_name = next((name for name, t in hints.items() if t is Request), None)
    if body_name is None or body_type is None:
        raise TypeError(f"{type(server).__name__}.verify must take its body as a pydantic model (got {signature})")
    declared = hints.get("return")
    response_fields = set(declared.model_fields) if isinstance(declared, type) and issubclass(declared, BaseModel) else set()
    outputs_only = response_fields - set(body_type.model_fields)
    owner = type(server).__name__

    async def verify(ngym_row: dict[str, Any], ngym_request: Request) -> HTTPResponse:
        row = {k: v for k, v in ngym_row.items() if k not in outputs_only}
        try:
            body = body_type.model_validate(row)
        except ValidationError as e:
            detail = [{**err, "input": bounded_input(err["input"])} if "input" in err else err
                      for err in e.errors(include_url=False)]
            raise HTTPException(422, detail=jsonable_encoder(detail)) from None
        kwargs: dict[str, Any] = {body_name: body}
        if request_name is not None:
            kwargs[request_name] = ngym_request
        reads: list[str] = []
        token = _missing_reads.set(reads)
        try:
            result = await handler(**kwargs)
        except AttributeError as e:
            if reads:
                raise _never_set(server, owner, reads, None) from e
            raise
        finally:
            _missing_reads.reset(token)
        if reads:
            raise _never_set(server, owner, reads, getattr(result, "reward", None))
        payload = result.model_dump(mode="json", exclude_none=True) if isinstance(result, BaseModel) else dict(result)
        for key, value in row.items():
            if key not in payload and key not in response_fields:
                payload[key] = value
        return HTTPResponse(orjson.dumps(payload), media_type="application/json")

    verify.__name__ = f"{owner}.verify"
    return verify


def _never_set(server: PydanticResourcesServer, owner: str, reads: list[str], reward: Any) -> RolloutError:
    names = ", ".join(dict.fromkeys(reads))
    answered = f" (it computed reward {reward!r}, which is not trusted)" if reward is not None else ""
    return RolloutError(
        f"{server.config.name}: {owner}.verify read {names} on the server, which was never set{answered}. "
        f"Set it in model_post_init (call super().model_post_init(context) first) or declare it with a default, "
        f"e.g. `{next(iter(dict.fromkeys(reads)))}: X = Field(default_factory=...)`.",
        kind=FailureKind.VERIFIER_ERROR,
        status=500,
    )
