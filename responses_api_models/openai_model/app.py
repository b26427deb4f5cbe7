"""openai_model: pass ``/v1/responses`` and ``/v1/chat/completions`` through to an OpenAI-compatible
endpoint (``openai_base_url``), with the configured model name and API key."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from fastapi import Request

from ngym.config.schema import ServerConfig
from ngym.errors import FailureKind, RolloutError, classify_failure
from ngym.models.server import ModelServer
from ngym.server.client import make_http_client
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


class OpenAIModel(ModelServer):
    config: OpenAIModelConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: httpx.AsyncClient | None = None

    def model_name(self) -> str:
        return self.config.openai_model

    async def _post(self, path: str, payload: dict[str, Any]) -> bytes:
        if self._http is None:
            self._http = make_http_client(timeout_s=self.config.timeout_s)
        url = self.config.openai_base_url.rstrip("/") + path
        headers = {"content-type": "application/json"}
        if self.config.openai_api_key:
            headers["authorization"] = f"Bearer {self.config.openai_api_key}"
        body = {**self.config.extra_body, **payload, "model": self.config.openai_model}
        try:
            answer = await self._http.post(url, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as e:
            raise RolloutError(
                f"{url} could not be reached: {type(e).__name__}: {e}", kind=FailureKind.MODEL_ERROR, retryable=True, status=502
            ) from None
        if answer.status_code >= 400:
            status = answer.status_code
            kind, retryable = classify_failure(status, FailureKind.MODEL_ERROR)
            raise RolloutError(
                f"{url} answered HTTP {status}: {answer.text[:2000]}",
                kind=kind,
                retryable=retryable,
                status=status if status in (400, 404, 429) else 502,
            )
        return answer.content

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        return Response.model_validate_json(await self._post("/responses", dump(body)))

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        return ChatCompletion.model_validate_json(await self._post("/chat/completions", dump(body)))


if __name__ == "__main__":
    OpenAIModel.run_webserver()
