"""``from nemo_gym.config_types import ModelServerRef, ResourcesServerRef`` — references from one
server instance's config to another (``{type: ..., name: ...}``), as the reference declares them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ngym.config.schema import Domain, HeadServerConfig, ServerConfig

BaseServerConfig = HeadServerConfig
BaseRunServerInstanceConfig = ServerConfig


class ModelServerRef(BaseModel):
    type: Literal["responses_api_models"]
    name: str


class ResourcesServerRef(BaseModel):
    type: Literal["resources_servers"]
    name: str


class AgentServerRef(BaseModel):
    type: Literal["responses_api_agents"]
    name: str


ServerRef = ModelServerRef | ResourcesServerRef | AgentServerRef

__all__ = [
    "AgentServerRef",
    "BaseRunServerInstanceConfig",
    "BaseServerConfig",
    "Domain",
    "ModelServerRef",
    "ResourcesServerRef",
    "ServerRef",
]
