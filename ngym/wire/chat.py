"""OpenAI Chat Completions shapes (request and response) as served by model servers.

Unknown request keys are kept and passed on to the backend (the reference silently dropped them).
Assistant messages may carry the three token fields of :class:`ngym.wire.responses.TokenInfo`.
"""

from __future__ import annotations

import time
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ngym.wire.responses import TokenInfo


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatFunction(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(_Open):
    type: Literal["function"] = "function"
    function: ChatFunction


class ToolCallFunction(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(TokenInfo):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class ChatCompletionCreateParams(_Open):
    messages: list[ChatMessage]
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    n: int | None = None
    stream: Literal[False] | None = None


class ChatChoice(_Open):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = "stop"
    logprobs: dict[str, Any] | None = None


class ChatUsage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(_Open):
    id: str = Field(default_factory=lambda: f"chatcmpl-{random.getrandbits(128):032x}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str = ""
    choices: list[ChatChoice]
    usage: ChatUsage | None = None
