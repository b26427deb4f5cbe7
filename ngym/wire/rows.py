"""Data rows: what ``ng_collect_rollouts`` reads, what an agent's ``/run`` takes, what ``/verify``
takes and returns.

    RunRequest (a data row)  ->  VerifyRequest (+ response)  ->  VerifyResponse (+ reward)

Environments subclass these with their task fields. Rows keep unknown keys (task fields of other
environments) so one row can pass through every hop unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict

from ngym.wire.responses import Response, ResponseCreateParams

AGENT_TYPE = "responses_api_agents"


class AgentRef(BaseModel):
    """Which agent runs a row. ``type`` may be omitted; only ``name`` is used for routing."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["responses_api_agents"] | None = None


class RunRequest(BaseModel):
    """One task: the model request that starts the episode, plus task fields for the verifier."""

    model_config = ConfigDict(extra="allow")

    responses_create_params: ResponseCreateParams


class SeedSessionRequest(BaseModel):
    """Body of ``/seed_session``: the whole row; environments declare the fields they need."""

    model_config = ConfigDict(extra="allow")


class SeedSessionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")


class VerifyRequest(RunRequest):
    response: Response


class VerifyResponse(VerifyRequest):
    reward: float

    @classmethod
    def of(cls, request: VerifyRequest, **fields: Any) -> Self:
        """The verify response for ``request``: its fields (task fields included) plus ``fields``."""
        # the request's own values (fields and extras, nested models as they are): no dump-and-reparse
        return cls.model_validate({**dict(request), **fields})


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON form ngym sends and writes: ``None`` fields are left out."""
    return model.model_dump(mode="json", exclude_none=True)
