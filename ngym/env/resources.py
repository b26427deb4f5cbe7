"""Resources servers: the environment. Tools are POST routes, ``/verify`` computes the reward,
``/seed_session`` starts an episode's state.

>>> class Weather(ResourcesServer):
...     def setup_webserver(self):
...         app = super().setup_webserver()
...         app.post("/get_weather")(self.get_weather)
...         return app
...     async def get_weather(self, body: dict) -> dict:
...         return {"weather": "cold"}
...     async def verify(self, body: VerifyRequest) -> VerifyResponse:
...         return VerifyResponse(**body.model_dump(), reward=1.0)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from ngym.config.schema import Domain, ServerConfig
from ngym.server.base import Server
from ngym.server.sessions import SessionStore, session_id
from ngym.wire.rows import RunRequest, SeedSessionRequest, SeedSessionResponse, VerifyRequest, VerifyResponse

__all__ = [
    "BaseResourcesServerConfig",
    "BaseRunRequest",
    "BaseSeedSessionRequest",
    "BaseSeedSessionResponse",
    "BaseVerifyRequest",
    "BaseVerifyResponse",
    "ResourcesServer",
    "ResourcesServerBase",
    "ResourcesServerConfig",
    "RunRequest",
    "SeedSessionRequest",
    "SeedSessionResponse",
    "SimpleResourcesServer",
    "VerifyRequest",
    "VerifyResponse",
]


class ResourcesServerConfig(ServerConfig):
    domain: Domain


class ResourcesServerBase(Server[ResourcesServerConfig]):
    """What every environment serves, whichever way it is written: ``/close_session`` and the
    session stores it empties. :class:`ResourcesServer` (reference style) and
    :class:`ngym.env.Environment` (typed contract) derive from it."""

    config: ResourcesServerConfig
    server_type = "resources_servers"

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/close_session")(self.close_session)
        return app

    def session_stores(self) -> list[SessionStore[Any]]:
        """Stores whose entry for a session ``/close_session`` drops (found on the instance)."""
        return [v for v in vars(self).values() if isinstance(v, SessionStore)]

    async def close_session(self, request: Request) -> dict[str, bool]:
        """Drop this episode's state (optional: state also expires after its TTL)."""
        sid = session_id(request)
        dropped = [store.pop(sid, None) is not None for store in self.session_stores()]
        return {"closed": any(dropped)}


class ResourcesServer(ResourcesServerBase):
    """Base of reference-style environments. Override :meth:`verify`; add tools in
    :meth:`setup_webserver`; keep per-episode state in a :class:`SessionStore` keyed by
    :func:`session_id`. (New environments: :class:`ngym.env.Environment`.)"""

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/seed_session")(self.seed_session)
        app.post("/verify", response_model_exclude_none=True)(self.verify)
        return app

    async def seed_session(self, body: SeedSessionRequest) -> SeedSessionResponse:
        return SeedSessionResponse()

    async def verify(self, body: VerifyRequest) -> VerifyResponse:
        raise NotImplementedError(f"{type(self).__name__} must implement verify()")


# Names used by the reference system, so environments written for it read the same.
BaseResourcesServerConfig = ResourcesServerConfig
SimpleResourcesServer = ResourcesServer
BaseRunRequest = RunRequest
BaseVerifyRequest = VerifyRequest
BaseVerifyResponse = VerifyResponse
BaseSeedSessionRequest = SeedSessionRequest
BaseSeedSessionResponse = SeedSessionResponse
