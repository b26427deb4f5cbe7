"""openai_model: pass ``/v1/responses`` and ``/v1/chat/completions`` through to an OpenAI-compatible
endpoint (``openai_base_url``), with the configured model name and API key."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import Field

from ngym.config.schema import ServerConfig
from ngym.models.backend import Backend
from ngym.models.server import ModelServer
from ngym.wire.chat import ChatCompletion, ChatCompletionCreateParams
from ngym.wire.responses import Response, ResponseCreateParams
from ngym.wire.rows import dump


class OpenAIModelConfig(ServerConfig):
    openai_base_url: str
    openai_api_key: str = ""
    openai_model: str
    extra_body: dict[str, Any] = {}
    #: seconds one model call may take
    timeout_s: float = 600.0
    #: most connections open to the endpoint at once (calls beyond it wait); none: as many as calls in flight
    max_connections: int | None = Field(default=None, ge=1)


class OpenAIModel(ModelServer):
    config: OpenAIModelConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = Backend(
            self.config.openai_base_url,
            self.config.openai_api_key,
            self.config.timeout_s,
            max_connections=self.config.max_connections,
        )

    def model_name(self) -> str:
        return self.config.openai_model

    def upstreams(self) -> list[Backend]:
        return [self.backend]

    async def _post(self, path: str, payload: dict[str, Any]) -> bytes:
        url = self.backend.base_url + path
        answer = await self.backend.post(url, {**self.config.extra_body, **payload, "model": self.config.openai_model})
        if answer.status_code >= 400:
            raise self.backend.error(url, answer)
        return answer.content

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        return Response.model_validate_json(await self._post("/responses", dump(body)))

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        return ChatCompletion.model_validate_json(await self._post("/chat/completions", dump(body)))


if __name__ == "__main__":
    OpenAIModel.run_webserver()
