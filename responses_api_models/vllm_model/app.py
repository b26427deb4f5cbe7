"""vllm_model: serve ``/v1/responses`` on top of any OpenAI-compatible Chat Completions server
(vLLM, llama.cpp's ``llama-server``, ...), with token ids for RL (spec §10.2).

Responses -> Chat Completions -> Responses, as in ``ngym.models.convert``. With
``return_token_id_information`` the last item of each model call carries ``prompt_token_ids``,
``generation_token_ids`` and ``generation_log_probs``, and the response carries
``token_faithfulness`` (does each call's prompt extend the previous prompt + generation?).
Several ``base_url``s: each episode (this server's session cookie) is pinned to one backend.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import httpx
import orjson
from fastapi import Request
from pydantic import Field, field_validator, model_validator

from ngym.models.backend import Backend
from ngym.config.schema import ServerConfig
from ngym.models.convert import (
    ConversionError,
    chat_message_to_items,
    context_overflow,
    empty_completion,
    merge_reasoning_into_content,
    response_from_chat,
    responses_to_chat,
    split_think_for_backend,
    token_info_of,
    tokens_from_logprobs,
)
from ngym.errors import FailureKind, RolloutError
from ngym.models.server import ModelServer
from ngym.server.sessions import SessionStore, session_id
from ngym.rollout.tokens import check_token_faithfulness
from ngym.wire.chat import ChatCompletion, ChatCompletionCreateParams, ChatMessage
from ngym.wire.responses import Response, ResponseCreateParams, TokenInfo

TokenizerApi = Literal["auto", "vllm", "llama_cpp"]


class VLLMModelConfig(ServerConfig):
    #: one or more OpenAI-compatible base URLs (``http://host:8000/v1``); episodes are spread round-robin
    base_url: list[str]
    api_key: str = ""
    model: str
    #: put prompt/generation token ids and generation logprobs on the last item of each call
    return_token_id_information: bool
    #: the backend splits ``<think>`` into ``reasoning_content`` (vLLM ``--reasoning-parser``)
    uses_reasoning_parser: bool
    replace_developer_role_with_system: bool = False
    #: false: an assistant turn with neither content nor tool calls as the last message ends the episode
    sequential_reasoning_allowed: bool = True
    #: forward ``/v1/responses`` to the backend's own ``/responses`` (no conversion)
    is_responses_native: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None
    #: how prompt token ids are obtained: ``vllm`` = POST <root>/tokenize with the messages; ``llama_cpp``
    #: = POST /apply-template then /tokenize; ``auto`` = from the shape of the backend's logprobs
    tokenizer_api: TokenizerApi = "auto"
    #: seconds one backend call may take
    timeout_s: float = 600.0
    #: most connections open to each backend at once (calls beyond it wait); none: as many as calls in flight
    max_connections: int | None = Field(default=None, ge=1)
    #: an idle episode's backend pin is forgotten after this many seconds
    session_ttl_s: float = 3600.0

    @field_validator("base_url", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @model_validator(mode="after")
    def _check(self) -> VLLMModelConfig:
        if not self.base_url or not all(isinstance(u, str) and u for u in self.base_url):
            raise ValueError("base_url must be a URL or a non-empty list of URLs (e.g. http://127.0.0.1:8000/v1)")
        if self.is_responses_native and (
            self.return_token_id_information
            or self.replace_developer_role_with_system
            or not self.sequential_reasoning_allowed
        ):
            raise ValueError(
                "is_responses_native: true cannot be combined with return_token_id_information, "
                "replace_developer_role_with_system or sequential_reasoning_allowed: false; turn those off"
            )
        return self


def _metadata_json(metadata: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """A per-request override carried as a JSON string in ``metadata[key]``."""
    raw = (metadata or {}).get(key)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise RolloutError(f"metadata[{key!r}] must be a JSON object string: {e}", kind=FailureKind.MODEL_ERROR, status=400) from None
    if not isinstance(value, dict):
        raise RolloutError(f"metadata[{key!r}] must be a JSON object string, got {raw!r}", kind=FailureKind.MODEL_ERROR, status=400)
    return value


class VLLMModel(ModelServer):
    config: VLLMModelConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backends = [self.make_backend(url) for url in self.config.base_url]
        self._pins: SessionStore[int] = SessionStore(ttl_s=self.config.session_ttl_s)
        self._round_robin = itertools.count()
        self._tokenizer_api: dict[str, TokenizerApi] = {}

    def make_backend(self, url: str, transport: httpx.AsyncBaseTransport | None = None) -> Backend:
        return Backend(url, self.config.api_key, self.config.timeout_s, transport, max_connections=self.config.max_connections)

    def model_name(self) -> str:
        return self.config.model

    def upstreams(self) -> list[Backend]:
        return list(self.backends)

    def backend_for(self, request: Request) -> Backend:
        """The backend of this request's episode: pinned round-robin on the first call."""
        sid = session_id(request)
        index = self._pins.get(sid)
        if index is None:
            index = next(self._round_robin) % len(self.backends)
            self._pins[sid] = index
        return self.backends[index]

    # ---- /v1/responses ---------------------------------------------------------------------------

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        if self.config.is_responses_native:
            return await self._responses_native(body, request)
        with_tokens = self.config.return_token_id_information
        try:
            chat = responses_to_chat(body, token_info=with_tokens)
        except ConversionError as e:
            raise RolloutError(str(e), kind=FailureKind.MODEL_ERROR, status=400) from None
        completion = await self.chat_completions(chat, request)
        choice = completion.choices[0]
        info = token_info_of(choice.message) if with_tokens else None
        output = chat_message_to_items(choice.message, info)
        response = response_from_chat(
            body, output, model=self.config.model, finish_reason=choice.finish_reason, usage=completion.usage
        )
        if with_tokens:
            history = body.input if isinstance(body.input, list) else []
            response.token_faithfulness = check_token_faithfulness([*history, *output]).model_dump()  # type: ignore[attr-defined]
        return response

    async def _responses_native(self, body: ResponseCreateParams, request: Request) -> Response:
        backend = self.backend_for(request)
        payload = body.model_dump(mode="json", exclude_unset=True)
        payload["model"] = self.config.model
        if self.config.chat_template_kwargs:
            payload["chat_template_kwargs"] = self.config.chat_template_kwargs
        payload = {**(self.config.extra_body or {}), **payload}
        return Response.model_validate(await backend.post_json(f"{backend.base_url}/responses", payload))

    # ---- /v1/chat/completions --------------------------------------------------------------------

    def _backend_body(self, params: ChatCompletionCreateParams) -> dict[str, Any]:
        """The request the backend gets: roles rewritten, ``<think>`` split, overrides merged."""
        messages: list[ChatMessage] = []
        for message in params.messages:
            if self.config.replace_developer_role_with_system and message.role == "developer":
                message = message.model_copy(update={"role": "system"})
            if self.config.uses_reasoning_parser:
                try:
                    message = split_think_for_backend(message)
                except ConversionError as e:
                    raise RolloutError(str(e), kind=FailureKind.MODEL_ERROR, status=400) from None
            messages.append(message)
        body = params.model_dump(mode="json", exclude_none=True, exclude={"messages", "metadata"})
        body["messages"] = [m.model_dump(mode="json", exclude_none=True) for m in messages]
        body["model"] = self.config.model
        metadata = getattr(params, "metadata", None)  # kept for these per-request overrides, not sent
        template_kwargs = {**(self.config.chat_template_kwargs or {}), **_metadata_json(metadata, "chat_template_kwargs")}
        if template_kwargs:
            body["chat_template_kwargs"] = template_kwargs
        extra = {**(self.config.extra_body or {}), **_metadata_json(metadata, "extra_body")}
        body = {**extra, **body}
        if self.config.return_token_id_information:
            body["logprobs"] = True
            body["return_tokens_as_token_ids"] = True
        return body

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        backend = self.backend_for(request)
        payload = self._backend_body(body)
        last = body.messages[-1] if body.messages else None
        if (
            not self.config.sequential_reasoning_allowed
            and last is not None
            and last.role == "assistant"
            and not last.content
            and not last.tool_calls
        ):
            return empty_completion(self.config.model)
        url = f"{backend.base_url}/chat/completions"
        answer = await backend.post(url, payload)
        if answer.status_code >= 400:
            if context_overflow(answer.status_code, answer.text):
                return empty_completion(self.config.model)
            raise backend.error(url, answer)
        try:
            completion = ChatCompletion.model_validate_json(answer.content)
        except ValueError as e:
            raise RolloutError(f"{url} returned an invalid chat completion: {e}", kind=FailureKind.MODEL_ERROR, status=502) from None
        if not completion.choices:
            raise RolloutError(f"{url} returned a chat completion without choices", kind=FailureKind.MODEL_ERROR, status=502)
        prompt_ids: list[int] | None = None
        for choice in completion.choices:
            message = choice.message
            if self.config.uses_reasoning_parser:
                message = merge_reasoning_into_content(message)
            elif message.reasoning_content or (message.model_extra or {}).get("reasoning"):
                raise RolloutError(
                    f"{url} returned reasoning fields but uses_reasoning_parser is false for {self.config.name}; set "
                    f"uses_reasoning_parser: true (or start the backend without a reasoning parser)",
                    kind=FailureKind.MODEL_ERROR,
                    status=502,
                )
            if self.config.return_token_id_information:
                entries = (choice.logprobs or {}).get("content") or []
                try:
                    ids, logprobs = tokens_from_logprobs(entries)
                except ConversionError as e:
                    raise RolloutError(f"{url}: {e}", kind=FailureKind.MODEL_ERROR, status=502) from None
                if prompt_ids is None:
                    prompt_ids = await self._prompt_ids(backend, payload, entries)
                info = TokenInfo(prompt_token_ids=prompt_ids, generation_token_ids=ids, generation_log_probs=logprobs)
                message = message.model_copy(update=info.model_dump(exclude_none=True))
                choice.logprobs = None
            choice.message = message
        return completion

    # ---- prompt token ids ------------------------------------------------------------------------

    def _api_of(self, backend: Backend, entries: list[dict[str, Any]]) -> TokenizerApi:
        if self.config.tokenizer_api != "auto":
            return self.config.tokenizer_api
        known = self._tokenizer_api.get(backend.base_url)
        if known is not None:
            return known
        if entries:
            token = entries[0].get("token")
            found: TokenizerApi = "vllm" if isinstance(token, str) and token.startswith("token_id:") else "llama_cpp"
            self._tokenizer_api[backend.base_url] = found
            return found
        return "auto"

    async def _prompt_ids(self, backend: Backend, payload: dict[str, Any], entries: list[dict[str, Any]]) -> list[int]:
        """The prompt's token ids, from the backend's own tokenizer and chat template."""
        api = self._api_of(backend, entries)
        template: dict[str, Any] = {k: payload[k] for k in ("messages", "tools", "chat_template_kwargs") if k in payload}
        if api in ("vllm", "auto"):
            answer = await backend.post_json(f"{backend.root}/tokenize", {"model": self.config.model, **template})
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if tokens or api == "vllm":
                return [int(t) for t in tokens or []]
            self._tokenizer_api[backend.base_url] = "llama_cpp"  # llama.cpp's /tokenize ignores messages
        rendered = await backend.post_json(f"{backend.root}/apply-template", template)
        prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            raise RolloutError(
                f"{backend.root}/apply-template returned no 'prompt' (got {str(rendered)[:200]}); set tokenizer_api: "
                f"vllm for a vLLM backend",
                kind=FailureKind.MODEL_ERROR,
                status=502,
            )
        tokens = await backend.post_json(f"{backend.root}/tokenize", {"content": prompt, "parse_special": True})
        return [int(t) for t in tokens["tokens"]]


if __name__ == "__main__":
    VLLMModel.run_webserver()
