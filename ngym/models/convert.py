"""Responses API <-> Chat Completions API, as the reference's ``vllm_model`` converts them (spec §10.2).

Pure functions, no I/O. Used by ``responses_api_models/vllm_model`` (any OpenAI-compatible chat
server: vLLM, llama.cpp, ...) and ``responses_api_models/local_model``.

Request direction (:func:`responses_to_chat`):

* a string ``input`` becomes one user message with a ``text`` part;
* user / system / developer messages keep their role (``input_text`` parts become ``text``
  parts; a string stays a string) and first *flush* the pending assistant turn;
* assistant messages, ``reasoning`` items (each summary as ``<think>…</think>``) and
  ``function_call`` items accumulate into one pending assistant turn; ``function_call_output``
  flushes it and becomes a ``tool`` message. Consecutive generated items therefore merge into
  **one** assistant chat message ``{content: text or None, tool_calls: [...]}``;
* with token information on, the three token fields of the last input item that carried
  ``prompt_token_ids`` go onto every assistant message flushed after it (the reference never
  clears them; kept for compatibility).

Response direction (:func:`chat_message_to_items`): every ``<think>…</think>`` span of the content
becomes one ``reasoning`` item (first), the rest of the text one assistant ``message`` (if not
empty, or if there is nothing else), then one ``function_call`` per tool call; the token fields go
on the **last** item.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import orjson

from ngym.wire.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionCreateParams,
    ChatFunction,
    ChatMessage,
    ChatTool,
    ChatUsage,
    ToolCall,
    ToolCallFunction,
)
from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    IncompleteDetails,
    InputText,
    InputTokensDetails,
    Item,
    Message,
    OutputText,
    Reasoning,
    Refusal,
    Response,
    ResponseCreateParams,
    SummaryText,
    TokenInfo,
    Usage,
    new_id,
)

__all__ = [
    "ConversionError",
    "THINK_RE",
    "chat_message_to_items",
    "chat_tools",
    "context_overflow",
    "empty_completion",
    "extract_think",
    "items_to_messages",
    "merge_reasoning_into_content",
    "message_text",
    "response_from_chat",
    "responses_to_chat",
    "split_think_for_backend",
    "token_info_of",
    "tokens_from_logprobs",
]

THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
TOKEN_FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")

#: phrases of an HTTP 400 body that mean "the prompt does not fit": vLLM ("maximum context length",
#: "max_tokens") and llama.cpp ("exceed_context_size_error", "exceeds the available context size")
_OVERFLOW_MARKERS = ("context length", "max_tokens", "exceed_context_size_error", "context size")


class ConversionError(ValueError):
    """An input cannot be expressed in the other API (the message names the item and the fix)."""


# ---- Responses -> Chat Completions ---------------------------------------------------------------


def token_info_of(item: Any) -> TokenInfo | None:
    """The three token fields of an item or message, or None when it carries no ``prompt_token_ids``."""
    prompt = getattr(item, "prompt_token_ids", None)
    if prompt is None:
        return None
    return TokenInfo(
        prompt_token_ids=list(prompt),
        generation_token_ids=list(getattr(item, "generation_token_ids", None) or []),
        generation_log_probs=list(getattr(item, "generation_log_probs", None) or []),
    )


def _text_parts(message: Message, index: int) -> str | list[dict[str, Any]]:
    """Content of a user/system/developer message in Chat Completions form."""
    if isinstance(message.content, str):
        return message.content
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, InputText | OutputText):
            parts.append({"type": "text", "text": part.text})
        else:
            kind = getattr(part, "type", type(part).__name__)
            raise ConversionError(
                f"input item {index} ({message.role} message) has a content part of type {kind!r}, which the "
                f"Chat Completions conversion does not support (only input_text). Send the text as input_text."
            )
    return parts


def message_text(content: str | Sequence[Any] | None) -> str:
    """The text of a message's content: a string, or its text parts joined without separator."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out: list[str] = []
    for part in content:
        if isinstance(part, InputText | OutputText):
            out.append(part.text)
        elif isinstance(part, Refusal):
            out.append(part.refusal)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])
    return "".join(out)


def _tool_output_text(output: str | list[Any]) -> str:
    if isinstance(output, str):
        return output
    texts = [p.get("text") for p in output if isinstance(p, dict) and isinstance(p.get("text"), str)]
    if len(texts) == len(output):
        return "".join(t for t in texts if t is not None)
    return orjson.dumps(output).decode()


def _append_generated(turn: _AssistantTurn, item: Item) -> None:
    """Add an assistant message, reasoning item or function call to the pending assistant turn."""
    if isinstance(item, Message):
        turn.text.append(message_text(item.content))
    elif isinstance(item, Reasoning):
        turn.text.extend(f"<think>{s.text}</think>" for s in item.summary)
    elif isinstance(item, FunctionCall):
        turn.tool_calls.append(
            ToolCall(id=item.call_id, type="function", function=ToolCallFunction(name=item.name, arguments=item.arguments))
        )
    turn.pending = True


class _AssistantTurn:
    """The assistant message being accumulated from consecutive generated items."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.pending = False

    def flush(self, out: list[ChatMessage], token_info: TokenInfo | None) -> None:
        if not self.pending:
            return
        fields: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) or None,
            "tool_calls": list(self.tool_calls),
        }
        if token_info is not None:
            fields.update(token_info.model_dump(include=set(TOKEN_FIELDS)))
        out.append(ChatMessage(**fields))
        self.text, self.tool_calls, self.pending = [], [], False


TokenMode = Literal[False, True, "per_call"]


def items_to_messages(items: Iterable[Item], *, token_info: TokenMode = False) -> list[ChatMessage]:
    """Chat messages for a list of Responses input items (see the module docstring for the rules).

    ``token_info``: False = no token fields; True = the reference's rule (the last seen token
    fields go on every later assistant message); ``"per_call"`` = the assistant turn ends right
    after the item that carries a call's token fields and only that message gets them, so each
    assistant message is exactly one model call (what token-faithful prompt building needs).
    """
    messages: list[ChatMessage] = []
    turn = _AssistantTurn()
    remembered: TokenInfo | None = None
    for index, item in enumerate(items):
        found = token_info_of(item) if token_info else None
        if token_info is True:
            remembered = found or remembered
        if isinstance(item, FunctionCallOutput):
            turn.flush(messages, remembered)
            messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=_tool_output_text(item.output)))
        elif isinstance(item, Message) and item.role != "assistant":
            turn.flush(messages, remembered)
            messages.append(ChatMessage(role=item.role, content=_text_parts(item, index)))
        elif isinstance(item, Message | Reasoning | FunctionCall):
            _append_generated(turn, item)
            if token_info == "per_call" and found is not None:
                turn.flush(messages, found)
        else:  # pragma: no cover - the Item union has no other members
            raise ConversionError(f"input item {index} of type {type(item).__name__} cannot be converted")
    turn.flush(messages, remembered)
    return messages


def chat_tools(tools: Iterable[FunctionTool]) -> list[ChatTool]:
    """Responses function tools ``{type, name, description, parameters, strict}`` in chat form."""
    out: list[ChatTool] = []
    for tool in tools:
        fields = {k: v for k, v in tool.model_dump(exclude={"type", "name"}).items() if v is not None}
        out.append(ChatTool(type="function", function=ChatFunction(name=tool.name, **fields)))
    return out


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """``{"type": "function", "name": X}`` (Responses) -> ``{"type": "function", "function": {"name": X}}``."""
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice and "function" not in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


#: Responses create params copied unchanged into the chat request when set
_COPIED = ("model", "temperature", "top_p", "seed", "metadata", "user", "store", "service_tier", "top_logprobs")


def responses_to_chat(params: ResponseCreateParams, *, token_info: TokenMode = False) -> ChatCompletionCreateParams:
    """The Chat Completions request equivalent to a Responses request.

    ``instructions`` (if set) becomes a leading system message; ``max_output_tokens`` becomes
    ``max_tokens``; ``parallel_tool_calls`` is always passed on.
    """
    if isinstance(params.input, str):
        messages = [ChatMessage(role="user", content=[{"type": "text", "text": params.input}])]
    else:
        messages = items_to_messages(params.input, token_info=token_info)
    if params.instructions:
        messages.insert(0, ChatMessage(role="system", content=params.instructions))
    fields: dict[str, Any] = {"messages": messages, "parallel_tool_calls": params.parallel_tool_calls}
    for name in _COPIED:
        if name in params.model_fields_set and getattr(params, name) is not None:
            fields[name] = getattr(params, name)
    if params.max_output_tokens is not None:
        fields["max_tokens"] = params.max_output_tokens
    if params.tools:
        fields["tools"] = chat_tools(params.tools)
    if "tool_choice" in params.model_fields_set and params.tool_choice is not None:
        fields["tool_choice"] = _chat_tool_choice(params.tool_choice)
    return ChatCompletionCreateParams(**fields)


# ---- <think> handling ------------------------------------------------------------------------------


def extract_think(content: str) -> tuple[list[str], str]:
    """(every ``<think>…</think>`` body in order, the content with those spans removed)."""
    return THINK_RE.findall(content), THINK_RE.sub("", content)


def split_think_for_backend(message: ChatMessage) -> ChatMessage:
    """For a backend with a reasoning parser: move the first ``<think>…</think>`` of an assistant
    message into ``reasoning_content`` (and ``reasoning``), out of ``content``."""
    if message.role != "assistant" or message.content is None:
        return message
    if isinstance(message.content, str):
        match = THINK_RE.search(message.content)
        if match is None:
            return message
        content: str | list[dict[str, Any]] = message.content[: match.start()] + message.content[match.end() :]
        reasoning = match.group(1)
    else:
        found: list[str] = []
        parts: list[dict[str, Any]] = []
        for part in message.content:
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str) and (match := THINK_RE.search(text)):
                found.append(match.group(1))
                part = {**part, "text": text[: match.start()] + text[match.end() :]}
            parts.append(part)
        if not found:
            return message
        if len(found) > 1:
            raise ConversionError(
                "an assistant message has <think> blocks in more than one content part; a reasoning parser "
                "backend takes one reasoning text per message. Merge the parts into one string."
            )
        content, reasoning = parts, found[0]
    return message.model_copy(update={"content": content, "reasoning_content": reasoning, "reasoning": reasoning})


def merge_reasoning_into_content(message: ChatMessage) -> ChatMessage:
    """A backend message's ``reasoning_content`` / ``reasoning`` put back in front of the content
    as ``<think>…</think>`` (both fields removed)."""
    data = message.model_dump(exclude_unset=True)
    reasoning = data.pop("reasoning_content", None) or data.pop("reasoning", None)
    data.pop("reasoning", None)
    if reasoning:
        data["content"] = f"<think>{reasoning}</think>{message_text(message.content)}"
    return ChatMessage.model_validate(data)


# ---- Chat Completions -> Responses -------------------------------------------------------------


def chat_message_to_items(message: ChatMessage, token_info: TokenInfo | None = None) -> list[Item]:
    """Output items for one generated chat message; the token fields go on the last item."""
    reasoning, rest = extract_think(message_text(message.content))
    calls = message.tool_calls or []
    items: list[Item] = []
    if reasoning:
        items.append(Reasoning(type="reasoning", id=new_id("rs"), summary=[SummaryText(text=r) for r in reasoning]))
    if rest or not (reasoning or calls):
        items.append(
            Message(type="message", id=new_id("msg"), role="assistant", status="completed", content=[OutputText(text=rest)])
        )
    for call in calls:
        items.append(
            FunctionCall(
                type="function_call",
                call_id=call.id,
                id=call.id,
                name=call.function.name,
                arguments=call.function.arguments,
                status="completed",
            )
        )
    if token_info is not None and token_info.prompt_token_ids is not None:
        last = items[-1]
        items[-1] = last.model_copy(update=token_info.model_dump(include=set(TOKEN_FIELDS)))
    return items


def response_from_chat(
    params: ResponseCreateParams,
    output: list[Item],
    *,
    model: str,
    finish_reason: str | None,
    usage: ChatUsage | None,
) -> Response:
    """The Response envelope of one model call: request parameters echoed, ``incomplete_details``
    iff the generation hit the token limit (``finish_reason == "length"``)."""
    truncated = finish_reason == "length"
    cached = 0
    if usage is not None:
        details = (usage.model_extra or {}).get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return Response(
        id=new_id("resp"),
        created_at=float(int(time.time())),
        model=model,
        output=output,
        status="incomplete" if truncated else "completed",
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if truncated else None,
        parallel_tool_calls=params.parallel_tool_calls is not False,
        tool_choice=params.tool_choice if params.tool_choice is not None else "auto",
        tools=list(params.tools or []),
        instructions=params.instructions,
        metadata=params.metadata,
        temperature=params.temperature,
        top_p=params.top_p,
        max_output_tokens=params.max_output_tokens,
        usage=None
        if usage is None
        else Usage(
            input_tokens=usage.prompt_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=cached),
            output_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        ),
    )


# ---- backend answers ---------------------------------------------------------------------------------


def tokens_from_logprobs(content: Sequence[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """(generation token ids, their log-probabilities) from ``choice.logprobs.content``.

    vLLM (with ``return_tokens_as_token_ids``) writes the id as ``"token": "token_id:123"``;
    llama.cpp adds an integer ``"id"``. Both are accepted; anything else is an error.
    """
    ids: list[int] = []
    logprobs: list[float] = []
    for index, entry in enumerate(content):
        token = entry.get("token")
        if isinstance(token, str) and token.startswith("token_id:"):
            ids.append(int(token.removeprefix("token_id:")))
        elif isinstance(entry.get("id"), int):
            ids.append(int(entry["id"]))
        else:
            raise ConversionError(
                f"logprobs entry {index} carries no token id (got token {token!r}): the backend must return ids, "
                f"as vLLM does with return_tokens_as_token_ids=true ('token_id:N') or llama.cpp does (integer 'id')"
            )
        logprobs.append(float(entry.get("logprob", 0.0)))
    return ids, logprobs


def context_overflow(status: int, body: str) -> bool:
    """True when a backend's HTTP error means the prompt does not fit the model's context."""
    return status == 400 and any(marker in body for marker in _OVERFLOW_MARKERS)


def empty_completion(model: str) -> ChatCompletion:
    """What a model call returns when the prompt no longer fits: an empty answer that ends the episode."""
    return ChatCompletion(
        model=model,
        choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content=""), finish_reason="stop")],
        usage=ChatUsage(),
    )

