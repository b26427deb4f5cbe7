"""``from nemo_gym.base_resources_server import SimpleResourcesServer, ...`` — the reference's
environment-author API (spec §13), backed by :mod:`ngym.interop.nemo`.

Request models ignore unknown keys, as the reference's do (``VerifyResponse(**body.model_dump(),
reward=...)`` works on a recorded row); the server puts the row's other keys back into the
``/verify`` answer.
"""

from __future__ import annotations

from pydantic import BaseModel

from ngym.config.schema import ServerConfig
from ngym.interop.nemo import PydanticResourcesServer
from ngym.wire.responses import ResponseCreateParams
from nemo_gym.openai_utils import NeMoGymResponse, NeMoGymResponseCreateParamsNonStreaming

__all__ = [
    "BaseResourcesServerConfig",
    "BaseRunRequest",
    "BaseSeedSessionRequest",
    "BaseSeedSessionResponse",
    "BaseVerifyRequest",
    "BaseVerifyResponse",
    "NeMoGymResponse",
    "NeMoGymResponseCreateParamsNonStreaming",
    "SimpleResourcesServer",
]


class BaseResourcesServerConfig(ServerConfig):
    """An environment's settings: ``host``, ``port``, ``entrypoint``, ``name``, ``domain`` (optional)
    and the environment's own keys."""


class BaseRunRequest(BaseModel):
    responses_create_params: ResponseCreateParams


class BaseVerifyRequest(BaseRunRequest):
    response: NeMoGymResponse


class BaseVerifyResponse(BaseVerifyRequest):
    reward: float


class BaseSeedSessionRequest(BaseModel):
    pass


class BaseSeedSessionResponse(BaseModel):
    pass


class SimpleResourcesServer(PydanticResourcesServer):
    """Subclass, declare ``config: <YourConfig>``, implement ``verify``; add tools in
    ``setup_webserver`` (call ``super().setup_webserver()`` first)."""

    config: BaseResourcesServerConfig

    async def seed_session(self, body: BaseSeedSessionRequest) -> BaseSeedSessionResponse:  # type: ignore[override]
        return BaseSeedSessionResponse()

    async def verify(self, body: BaseVerifyRequest) -> BaseVerifyResponse:  # type: ignore[override]
        raise NotImplementedError(f"{type(self).__name__} must implement verify()")
