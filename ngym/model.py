"""Model servers: the policy behind ``/v1/responses`` and ``/v1/chat/completions``."""

from __future__ import annotations

from fastapi import FastAPI, Request

from ngym.config.schema import ServerConfig
from ngym.server.base import Server
from ngym.wire.chat import ChatCompletion, ChatCompletionCreateParams
from ngym.wire.responses import Response, ResponseCreateParams


class ModelServer(Server[ServerConfig]):
    """Base of model servers; implement :meth:`responses` and :meth:`chat_completions`."""

    server_type = "responses_api_models"

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()

        @app.post("/v1/responses", response_model_exclude_none=True)
        async def responses(body: ResponseCreateParams, request: Request) -> Response:
            return await self.responses(body, request)

        @app.post("/v1/chat/completions", response_model_exclude_none=True)
        async def chat_completions(body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
            return await self.chat_completions(body, request)

        @app.get("/v1/models")
        async def models() -> dict[str, object]:
            return {"object": "list", "data": [{"id": self.model_name(), "object": "model", "owned_by": "ngym"}]}

        return app

    def model_name(self) -> str:
        return self.config.name

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        raise NotImplementedError

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        raise NotImplementedError


SimpleResponsesAPIModel = ModelServer
