"""example_session_state_mgmt: a counter per episode. The reward checks the server-side state at
verify time (1.0 iff the episode's counter equals ``expected_count``), not the model's words."""

from __future__ import annotations

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from ngym.env.resources import ResourcesServer, ResourcesServerConfig, SeedSessionRequest, VerifyRequest, VerifyResponse
from ngym.server.sessions import SessionStore, session_id


class CounterConfig(ResourcesServerConfig):
    #: seconds an idle episode's counter is kept
    session_ttl_s: float = 3600.0


class CounterSeedRequest(SeedSessionRequest):
    initial_count: int = 0


class IncrementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int


class CounterVerifyRequest(VerifyRequest):
    expected_count: int


class CounterResourcesServer(ResourcesServer):
    config: CounterConfig

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.counters: SessionStore[int] = SessionStore(ttl_s=self.config.session_ttl_s)

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/increment_counter")(self.increment_counter)
        app.post("/get_counter_value")(self.get_counter_value)
        return app

    async def seed_session(self, body: CounterSeedRequest, request: Request) -> dict[str, object]:  # type: ignore[override]
        self.counters.setdefault(session_id(request), body.initial_count)
        return {}

    async def increment_counter(self, body: IncrementRequest, request: Request) -> dict[str, bool]:
        sid = session_id(request)
        self.counters[sid] = self.counters.get(sid, 0) + body.count
        return {"success": True}

    async def get_counter_value(self, request: Request) -> dict[str, int]:
        return {"count": self.counters.get(session_id(request), 0)}

    async def verify(self, body: CounterVerifyRequest, request: Request) -> VerifyResponse:  # type: ignore[override]
        count = self.counters.get(session_id(request))
        return VerifyResponse.of(body, reward=float(count is not None and count == body.expected_count))


if __name__ == "__main__":
    CounterResourcesServer.run_webserver()
