"""Model servers: the policy behind ``/v1/responses`` and ``/v1/chat/completions``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response as HTTPResponse

from ngym.config.schema import ServerConfig
from ngym.models.backend import Backend
from ngym.server.base import Server, json_response
from ngym.wire.chat import ChatCompletion, ChatCompletionCreateParams
from ngym.wire.responses import Response, ResponseCreateParams
from ngym.wire.rows import dump


class ModelServer(Server[ServerConfig]):
    """Base of model servers; implement :meth:`responses` and :meth:`chat_completions`."""

    server_type = "responses_api_models"

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()

        # Serialised once with orjson: the objects were built from typed models already, so a second
        # validation pass through a FastAPI response model would only cost time.
        @app.post("/v1/responses", response_model=Response, response_model_exclude_none=True)
        async def responses(body: ResponseCreateParams, request: Request) -> HTTPResponse:
            return json_response(dump(await self.responses(body, request)))

        @app.post("/v1/chat/completions", response_model=ChatCompletion, response_model_exclude_none=True)
        async def chat_completions(body: ChatCompletionCreateParams, request: Request) -> HTTPResponse:
            try:
                answer = await self.chat_completions(body, request)
            except NotImplementedError:  # the caller asked for what this server does not serve: a 404
                raise HTTPException(404, f"{self.config.name} ({type(self).__name__}) serves /v1/responses only, "
                                         f"not /v1/chat/completions.") from None
            return json_response(dump(answer))

        @app.get("/v1/models")
        async def models() -> dict[str, object]:
            return {"object": "list", "data": [{"id": self.model_name(), "object": "model", "owned_by": "ngym"}]}

        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with inner(app):
                try:
                    yield
                finally:
                    for backend in self.upstreams():
                        await backend.aclose()

        app.router.lifespan_context = lifespan
        return app

    def upstreams(self) -> list[Backend]:
        """The backends this server calls; their connections are closed when the app shuts down."""
        return []

    def model_name(self) -> str:
        return self.config.name

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        raise NotImplementedError

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        raise NotImplementedError


SimpleResponsesAPIModel = ModelServer
