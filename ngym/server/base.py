"""The base every server derives from: typed config, a FastAPI app, sessions, errors as JSON.

A server module ends with ``if __name__ == "__main__": MyServer.run_webserver()``; ``ng_run``
starts it with the deployment's config in ``NGYM_CONFIG_DICT`` and the instance name in
``NGYM_INSTANCE``.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import sys
import traceback
import typing
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ngym.config.schema import ServerConfig
from ngym.errors import ConfigError, NgymError, RolloutError
from ngym.server.auth import TOKEN_ENV, TokenMiddleware, current_token, is_loopback
from ngym.server.client import ServerClient
from ngym.server.fastpath import FastPathApp
from ngym.server.sessions import SessionMiddleware

CONFIG_ENV = "NGYM_CONFIG_DICT"
INSTANCE_ENV = "NGYM_INSTANCE"
PARENT_ENV = "NGYM_LAUNCHER_PID"


def die_with_launcher() -> None:
    """End this server when the launcher that started it dies, even by ``kill -9`` (Linux
    ``PR_SET_PDEATHSIG``; set here, in the child, because ``preexec_fn`` is unsafe in a threaded
    launcher)."""
    launcher = os.environ.get(PARENT_ENV)
    if not launcher:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # the launcher died before the line above
        sys.exit("error: the ng_run that started this server is gone")

C = TypeVar("C", bound=ServerConfig)

log = logging.getLogger("ngym.server")


class ErrorMiddleware:
    """Inside the session middleware, so an error response still carries the session cookie.

    Any exception becomes ``500 {"error": "<Type>: <message>", "server": "<instance>"}``.
    """

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


def json_response(payload: Any, status_code: int = 200) -> Response:
    """A JSON response serialised once with orjson (no response-model validation on the hot path)."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def section_of(global_config: DictConfig, name: str) -> tuple[str, str, dict[str, Any]]:
    """(server type, implementation, resolved settings) of one instance."""
    if name not in global_config:
        raise ConfigError(f"Instance {name!r} is not in the deployment config.")
    node = global_config[name]
    ((server_type, impls),) = node.items()
    ((impl, _),) = impls.items()
    try:
        settings = OmegaConf.to_container(global_config[name][server_type][impl], resolve=True)
    except InterpolationKeyError as e:
        missing = str(e).split("'")[1] if "'" in str(e) else str(e)
        raise ConfigError(
            f"{name} -> {server_type} -> {impl} uses ${{{missing}}}, which is not set. Put `{missing}: ...` in "
            f"env.yaml or pass +{missing}=... on the command line."
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{name} -> {server_type} -> {impl}: cannot resolve the config: {e}") from None
    assert isinstance(settings, dict)
    return str(server_type), str(impl), {str(k): v for k, v in settings.items()}


class Server(Generic[C]):
    """Base of resources servers, agents and model servers.

    Subclasses annotate ``config`` with their own :class:`ServerConfig` subclass; ``run_webserver``
    validates the instance's YAML section against it.
    """

    config: C
    server_type: ClassVar[str] = ""

    def __init__(self, config: C, server_client: ServerClient) -> None:
        self.config = config
        self.server_client = server_client

    @classmethod
    def config_type(cls) -> type[ServerConfig]:
        hints = typing.get_type_hints(cls)
        found = hints.get("config", ServerConfig)
        return found if isinstance(found, type) and issubclass(found, ServerConfig) else ServerConfig

    def setup_webserver(self) -> FastAPI:
        """The app with the health route; subclasses add theirs after calling ``super()``."""
        app = FastAPI(title=f"{type(self).__name__} ({self.config.name})", docs_url="/docs", redoc_url=None)

        @app.get("/")
        async def health() -> dict[str, str]:
            return {"status": "ok", "name": self.config.name, "server": type(self).__name__}

        return app

    def build_app(self) -> FastPathApp:
        """The complete ASGI app: routes, errors as JSON, sessions, and the fast path for JSON
        routes in front (:mod:`ngym.server.fastpath`; attributes of the FastAPI app pass through)."""
        app = self.setup_webserver()
        app.add_middleware(ErrorMiddleware, server_name=self.config.name)
        app.add_middleware(SessionMiddleware, cookie_name=f"{type(self).__name__}___{self.config.name}")
        if not is_loopback(self.config.host):
            token = current_token()
            if not token:
                raise ConfigError(
                    f"{self.config.name} binds to {self.config.host}, which is reachable from other machines, but no "
                    f"deployment token is set ({TOKEN_ENV}). Start it with ng_run, which makes one."
                )
            app.add_middleware(TokenMiddleware, token=token)
        return FastPathApp(app)

    @classmethod
    def from_global_config(cls, global_config: DictConfig, name: str) -> typing.Self:
        server_type, impl, settings = section_of(global_config, name)
        try:
            config = cls.config_type().model_validate({**settings, "name": name})
        except ValidationError as e:
            problems = "; ".join(
                f"{' -> '.join(str(p) for p in (name, server_type, impl, *err['loc']))}: {err['msg']} (got {err.get('input')!r})"
                for err in e.errors()
            )
            raise ConfigError(f"Invalid settings for {cls.__name__}: {problems}. Fix the config file.") from None
        return cls(config, ServerClient.from_config(global_config))  # type: ignore[arg-type]

    @classmethod
    def run_webserver(cls) -> None:
        """Entry point of a server process started by ``ng_run``."""
        if _hosting is not None:  # imported by a process that hosts several servers (ngym.server.host)
            _hosting(cls)
            return
        die_with_launcher()
        raw = os.environ.get(CONFIG_ENV) or os.environ.get("NEMO_GYM_CONFIG_DICT")
        name = os.environ.get(INSTANCE_ENV) or os.environ.get("NEMO_GYM_CONFIG_PATH")
        if not raw or not name:
            sys.exit(
                f"error: {cls.__name__} is started by ng_run (it needs {CONFIG_ENV} and {INSTANCE_ENV}). "
                f"Run: ng_run \"+config_paths=[<your config>.yaml]\""
            )
        try:
            cfg = OmegaConf.create(raw)
            assert isinstance(cfg, DictConfig)
            server = cls.from_global_config(cfg, name)
        except NgymError as e:
            sys.exit(f"error: {e}")
        raise_open_file_limit()
        tune_gc()
        import uvicorn

        uvicorn.Server(uvicorn_config(server.build_app(), server.config.host, server.config.port)).run()


#: set by :mod:`ngym.server.host` while it runs a server module: receives the server class
_hosting: typing.Callable[[type[Server[typing.Any]]], None] | None = None


def uvicorn_config(app: ASGIApp, host: str | None, port: int | None) -> typing.Any:
    """How every ngym server is served (one place, so hosted and single servers behave the same)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host or "127.0.0.1",
        port=int(port or 0),
        log_level=os.environ.get("NGYM_LOG_LEVEL", "warning"),
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=75,  # longer than clients keep idle connections (30 s): no reuse races
        backlog=8192,  # bursts of thousands of new connections (large collections) are not refused
        loop=os.environ.get("NGYM_UVICORN_LOOP", "auto"),
        http="auto",
    )


def tune_gc() -> None:
    """Garbage-collector settings for a long-running server or collector process.

    Thousands of rollouts in flight keep millions of objects alive, and CPython 3.11's default
    thresholds (700, 10, 10) then rescan them all, over and over: measured at 4,000 rollouts in
    flight, 46% of the wall time went to the collector (bench/overhead.md). Objects from start-up
    are frozen (never rescanned) and collections run ~70x less often; cyclic garbage lives a little
    longer, which costs a little memory."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to the hard limit (at most 65,535); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(65535, hard) if hard != resource.RLIM_INFINITY else 65535
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
