"""The base every server derives from: typed config, a FastAPI app, sessions, errors as JSON.

A server module ends with ``if __name__ == "__main__": MyServer.run_webserver()``; ``ng_run``
starts it with the deployment's config in ``NGYM_CONFIG_DICT`` and the instance name in
``NGYM_INSTANCE``.

The core's layers, each importing only those above it::

    http, auth, sessions, process, asgi   HTTP details, token, session cookie, process tuning
    middleware                            errors as JSON answers
    fastpath                              JSON routes answered without the middleware stack
    local                                 apps hosted by this process, called without a socket
    transport                             aiohttp / in-process / httpx transports
    client                                ServerClient: calls servers by instance name
    loader                                runs an app.py in this process
    base                                  the Server class (this module)
    host                                  several servers in one process
"""

from __future__ import annotations

import os
import sys
import typing
from typing import ClassVar, Generic, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from omegaconf import DictConfig, OmegaConf
from pydantic import ValidationError

from ngym.config.instance import ServerInstance, parse_instance
from ngym.config.schema import ServerConfig
from ngym.errors import ConfigError, NgymError
from ngym.server import loader
from ngym.server.auth import TOKEN_ENV, TokenMiddleware, current_token, is_loopback
from ngym.server.client import ServerClient
from ngym.server.fastpath import FastPathApp, FastPathSettings, bypassable
from ngym.server.http import json_response
from ngym.server.middleware import ErrorMiddleware, error_answer, validation_handler
from ngym.server.process import (
    CONFIG_ENV,
    HOST_ENV,
    INSTANCE_ENV,
    PORT_ENV,
    PARENT_ENV,
    die_with_launcher,
    raise_open_file_limit,
    tune_gc,
    uvicorn_config,
)
from ngym.server.sessions import SessionCookie, SessionMiddleware

__all__ = [
    "CONFIG_ENV",
    "INSTANCE_ENV",
    "PARENT_ENV",
    "ErrorMiddleware",
    "Server",
    "die_with_launcher",
    "error_answer",
    "json_response",
    "raise_open_file_limit",
    "tune_gc",
    "uvicorn_config",
]

C = TypeVar("C", bound=ServerConfig)


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
        """The complete ASGI app: routes, errors as JSON, sessions, the deployment token off
        loopback, and the fast path for JSON routes in front (:mod:`ngym.server.fastpath`, told
        what this middleware does; attributes of the FastAPI app pass through)."""
        app = self.setup_webserver()
        enabled = bypassable(app)  # before ngym's own middleware and handlers are added
        # a 422 never echoes a large body (the fast path leaves invalid bodies to this handler)
        app.add_exception_handler(RequestValidationError, validation_handler)
        name = self.config.name
        cookie = SessionCookie(f"{type(self).__name__}___{name}")
        app.add_middleware(ErrorMiddleware, server_name=name)
        app.add_middleware(SessionMiddleware, cookie_name=cookie.name, secret=cookie.secret)
        token = None
        if not is_loopback(self.config.host):
            token = current_token()
            if not token:
                raise ConfigError(
                    f"{name} binds to {self.config.host}, which is reachable from other machines, but no "
                    f"deployment token is set ({TOKEN_ENV}). Start it with ng_run, which makes one."
                )
            app.add_middleware(TokenMiddleware, token=token)
        return FastPathApp(app, FastPathSettings(server_name=name, session=cookie, token=token, enabled=enabled))

    @classmethod
    def from_instance(cls, instance: ServerInstance, global_config: DictConfig) -> typing.Self:
        """The server of ``instance``, its settings validated against :meth:`config_type`."""
        try:
            config = cls.config_type().model_validate({**instance.settings, "name": instance.name})
        except ValidationError as e:
            problems = "; ".join(
                f"{' -> '.join(str(p) for p in (instance.path, *err['loc']))}: {err['msg']} (got {err.get('input')!r})"
                for err in e.errors()
            )
            raise ConfigError(f"Invalid settings for {cls.__name__}: {problems}. Fix the config file.") from None
        return cls(config, ServerClient.from_config(global_config))  # type: ignore[arg-type]

    @classmethod
    def from_global_config(cls, global_config: DictConfig, name: str) -> typing.Self:
        return cls.from_instance(parse_instance(global_config, name), global_config)

    @classmethod
    def run_webserver(cls) -> None:
        """Entry point of a server process started by ``ng_run``."""
        if loader.claim(cls):  # this module is being loaded into another process (ngym.server.loader)
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
            if os.environ.get(HOST_ENV):  # placed on a node by ng_run (Ray): bind to that node's address
                server.config.host = os.environ[HOST_ENV]
        except NgymError as e:
            sys.exit(f"error: {e}")
        raise_open_file_limit()
        tune_gc()
        import uvicorn

        port = int(os.environ.get(PORT_ENV) or server.config.port or 0)  # a replica's own port
        uvicorn.Server(uvicorn_config(server.build_app(), server.config.host, port)).run()
