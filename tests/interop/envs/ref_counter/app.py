"""A stateful environment in NeMo Gym v0.2.1's style: per-session state in a
``Field(default_factory=dict)`` keyed by ``request.session[SESSION_ID_KEY]``, a ``Request``
parameter on ``seed_session`` and ``verify``, a tool route. Used by tests/interop."""

from typing import Dict

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from nemo_gym.base_resources_server import (
    BaseResourcesServerConfig,
    BaseSeedSessionRequest,
    BaseSeedSessionResponse,
    BaseVerifyRequest,
    BaseVerifyResponse,
    SimpleResourcesServer,
)
from nemo_gym.server_utils import SESSION_ID_KEY


class CounterConfig(BaseResourcesServerConfig):
    pass


class CounterSeedRequest(BaseSeedSessionRequest):
    initial_count: int = 0


class IncrementRequest(BaseModel):
    count: int


class CounterValue(BaseModel):
    count: int


class CounterVerifyRequest(BaseVerifyRequest):
    expected_count: int


class CounterServer(SimpleResourcesServer):
    config: CounterConfig
    session_id_to_counter: Dict[str, int] = Field(default_factory=dict)

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/increment_counter")(self.increment_counter)
        app.post("/get_counter_value")(self.get_counter_value)
        return app

    async def seed_session(self, request: Request, body: CounterSeedRequest) -> BaseSeedSessionResponse:
        self.session_id_to_counter[request.session[SESSION_ID_KEY]] = body.initial_count
        return BaseSeedSessionResponse()

    async def increment_counter(self, request: Request, body: IncrementRequest) -> CounterValue:
        session_id = request.session[SESSION_ID_KEY]
        self.session_id_to_counter[session_id] = self.session_id_to_counter.get(session_id, 0) + body.count
        return CounterValue(count=self.session_id_to_counter[session_id])

    async def get_counter_value(self, request: Request) -> CounterValue:
        return CounterValue(count=self.session_id_to_counter.get(request.session[SESSION_ID_KEY], 0))

    async def verify(self, request: Request, body: CounterVerifyRequest) -> BaseVerifyResponse:
        count = self.session_id_to_counter.get(request.session[SESSION_ID_KEY], 0)
        return BaseVerifyResponse(**body.model_dump(), reward=1.0 if count == body.expected_count else 0.0)


if __name__ == "__main__":
    CounterServer.run_webserver()
