"""The policy under training, served to the deployment as an OpenAI-compatible ``/v1/responses``
endpoint from the trainer's own process (so agents, tools and verifiers run unchanged over HTTP).

Token-in/token-out: the ids the trainer trains on are exactly the ids the model saw and produced.

* First call of an episode: the conversation is rendered with the tokenizer's chat template
  (tools described in the system message, calls written as ``<tool_call>{json}</tool_call>``) and
  tokenized once.
* Later calls: the request carries the previous call's items back (the agent resends the
  episode), and the last of them holds that call's ``prompt_token_ids`` + ``generation_token_ids``.
  The new prompt is **those ids unchanged** followed by only the new messages (tool outputs, ...)
  rendered and tokenized; earlier turns are never re-rendered or re-tokenized. (Re-rendering is
  the trap: a generated tool call re-rendered by a template rarely gives back the same ids.)
* Every response's last item carries ``prompt_token_ids``, ``generation_token_ids`` and
  ``generation_log_probs`` (the sampling distribution's log-probabilities), as vLLM-backed model
  servers do for trainers (spec §10.2). The endpoint also remembers what it generated for each
  prompt (:meth:`PolicyEndpoint.generated_for`), so a trainer can check the ids that came back
  through the agent and the model server are the ones generated.

Use it behind ``openai_model`` (a pass-through): ``policy_base_url = endpoint.base_url``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    IncompleteDetails,
    Item,
    Message,
    OutputText,
    Reasoning,
    Response,
    ResponseCreateParams,
    Usage,
    new_id,
)
from ngym.wire.rows import dump

__all__ = ["ChatRenderer", "Generator", "PolicyEndpoint", "RenderError"]

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MARKER = "\u2063ngym\u2063"


class RenderError(ValueError):
    """The conversation cannot be turned into prompt ids token-faithfully."""


class Tokenizer(Protocol):  # the part of a transformers tokenizer used here
    eos_token_id: int | None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class Generator(Protocol):
    """Samples a continuation of ``prompt_ids``; returns the generated ids (ending with an
    end-of-turn id when the model stopped by itself) and each one's log-probability. With ``seed``
    the sampling draws from a generator seeded with it (the same seed, prompt and weights give the
    same ids, whatever else runs concurrently); without, from the generator's own stream."""

    def generate(
        self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None
    ) -> tuple[list[int], list[float]]: ...


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (stable across processes and Python versions, unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _tools_text(tools: Sequence[Any]) -> str:
    specs = [{"name": t.name, "description": t.description or "", "parameters": t.parameters or {}} for t in tools]
    return (
        "You can call these tools:\n"
        + "\n".join(json.dumps(s) for s in specs)
        + '\nTo call a tool, write <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>. '
        "Its result comes back in <tool_response>...</tool_response>."
    )


class ChatRenderer:
    """Responses items <-> the model's chat template, token-faithfully (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, stop_ids: Sequence[int] | None = None) -> None:
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.stop_ids = set(stop_ids) if stop_ids is not None else ({eos} if eos is not None else set())
        self._tail = self._assistant_tail()

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert isinstance(text, str)
        return text

    def _assistant_tail(self) -> str:
        """What the template writes after an assistant message's content (``<|im_end|>\\n`` for ChatML)."""
        text = self._render([{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARKER}], False)
        if _MARKER not in text:
            raise RenderError("the chat template drops assistant content; it cannot be used for multi-turn training")
        return text.split(_MARKER, 1)[1]

    def messages(self, body: ResponseCreateParams, items: Sequence[Item] | None = None) -> list[dict[str, str]]:
        """Chat messages for ``items`` (default: the request's input), tools in the system message."""
        items = body.input_items() if items is None else items
        out: list[dict[str, str]] = []
        system = [body.instructions] if body.instructions else []
        pending_tool: list[str] = []

        def flush_tool() -> None:
            if pending_tool:
                out.append({"role": "user", "content": "\n".join(pending_tool)})
                pending_tool.clear()

        for item in items:
            if isinstance(item, Message):
                if item.role in ("system", "developer") and not out:
                    system.append(item.text())
                    continue
                flush_tool()
                role = "system" if item.role == "developer" else item.role
                if role == "assistant" and out and out[-1]["role"] == "assistant":
                    out[-1]["content"] += item.text()
                else:
                    out.append({"role": role, "content": item.text()})
            elif isinstance(item, FunctionCall):
                flush_tool()
                try:
                    arguments = json.loads(item.arguments) if item.arguments.strip() else {}
                except json.JSONDecodeError:
                    arguments = item.arguments
                text = "<tool_call>" + json.dumps({"name": item.name, "arguments": arguments}) + "</tool_call>"
                if out and out[-1]["role"] == "assistant":
                    out[-1]["content"] += text
                else:
                    out.append({"role": "assistant", "content": text})
            elif isinstance(item, FunctionCallOutput):
                output = item.output if isinstance(item.output, str) else json.dumps(item.output)
                pending_tool.append(f"<tool_response>{output}</tool_response>")
            elif isinstance(item, Reasoning):
                continue
        flush_tool()
        if body.tools:
            system.append(_tools_text(body.tools))
        if system:
            out.insert(0, {"role": "system", "content": "\n\n".join(s for s in system if s)})
        return out

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, body: ResponseCreateParams) -> list[int]:
        """The ids the model continues for this request (token-in/token-out for later calls)."""
        items = body.input_items()
        last = max((i for i, item in enumerate(items) if getattr(item, "generation_token_ids", None) is not None), default=None)
        if last is None:
            return self.encode(self._render(self.messages(body), True))
        previous = items[last]
        prompt = getattr(previous, "prompt_token_ids", None)
        generated = getattr(previous, "generation_token_ids", None)
        if prompt is None or generated is None:
            raise RenderError(f"input item {last} has generation_token_ids but no prompt_token_ids")
        before = self._render(self.messages(body, items[: last + 1]), False)
        after = self._render(self.messages(body, items), True)
        if not after.startswith(before):
            raise RenderError(
                "the chat template renders the conversation differently once messages are added (not prefix-stable); "
                "the new turn cannot be appended to the generated ids"
            )
        tail = self._tail
        if generated and generated[-1] in self.stop_ids:
            stop_text = self.tokenizer.decode([generated[-1]], skip_special_tokens=False)
            if tail.startswith(stop_text):
                tail = tail[len(stop_text) :]
        return list(prompt) + list(generated) + self.encode(tail + after[len(before) :])

    def parse(self, text: str) -> list[Item]:
        """Generated text -> output items: ``<tool_call>{json}</tool_call>`` blocks become function
        calls (when they parse), the rest an assistant message."""
        calls: list[Item] = []
        for block in _TOOL_CALL.findall(text):
            try:
                data = json.loads(block)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                arguments = data.get("arguments", {})
                calls.append(
                    FunctionCall(
                        call_id=new_id("call"),
                        id=new_id("fc"),
                        name=data["name"],
                        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
                        status="completed",
                    )
                )
        rest = _TOOL_CALL.sub("", text).strip() if calls else text.strip()
        items: list[Item] = []
        if rest or not calls:
            items.append(Message(type="message", id=new_id("msg"), role="assistant", status="completed", content=[OutputText(text=rest)]))
        return items + calls


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PolicyEndpoint:
    """``POST /v1/responses`` (and ``GET /v1/models``) backed by a :class:`Generator`, in a thread."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        generator: Generator,
        *,
        model_name: str = "policy",
        max_output_tokens: int = 64,
        temperature: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        stop_ids: Sequence[int] | None = None,
    ) -> None:
        self.renderer = ChatRenderer(tokenizer, stop_ids)
        self.tokenizer = tokenizer
        self.generator = generator
        self.model_name = model_name
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.host = host
        self.port = port or _free_port(host)
        self._lock = threading.Lock()
        self._generated: dict[tuple[int, ...], list[list[int]]] = {}
        self.calls = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def generated_for(self, prompt_ids: Sequence[int]) -> list[list[int]]:
        """Every generation this endpoint produced for exactly ``prompt_ids`` since :meth:`forget`
        (a GRPO group sends the same first prompt several times)."""
        return self._generated.get(tuple(prompt_ids), [])

    def forget(self) -> None:
        """Drop the record of generations (call once per training step)."""
        self._generated.clear()

    def respond(self, body: ResponseCreateParams) -> Response:
        prompt = self.renderer.prompt_ids(body)
        limit = body.max_output_tokens or self.max_output_tokens
        temperature = self.temperature if body.temperature is None else body.temperature
        # a request's seed (one per rollout, set by GymGRPO) + the prompt's length: each call of an
        # episode gets its own stream, independent of the order in which concurrent episodes arrive
        seed = None if body.seed is None else derived_seed(body.seed, len(prompt))
        with self._lock:  # one generation at a time: the weights are shared with the trainer
            generated, logprobs = self.generator.generate(prompt, limit, temperature, seed=seed)
            self._generated.setdefault(tuple(prompt), []).append(list(generated))
            self.calls += 1
        stopped = bool(generated) and generated[-1] in self.renderer.stop_ids
        text = self.tokenizer.decode(generated[:-1] if stopped else generated, skip_special_tokens=True)
        items = self.renderer.parse(text)
        last = items[-1]
        assert not isinstance(last, FunctionCallOutput)  # parsed model output: message, call or reasoning
        last.prompt_token_ids = prompt
        last.generation_token_ids = list(generated)
        last.generation_log_probs = list(logprobs)
        return Response(
            model=self.model_name,
            output=items,
            status="completed" if stopped else "incomplete",
            incomplete_details=None if stopped else IncompleteDetails(reason="max_output_tokens"),
            tools=body.tools or [],
            temperature=temperature,
            max_output_tokens=limit,
            usage=Usage(input_tokens=len(prompt), output_tokens=len(generated), total_tokens=len(prompt) + len(generated)),
        )

    def app(self) -> FastAPI:
        app = FastAPI(title="ngym policy endpoint")

        @app.post("/v1/responses")
        def responses(body: ResponseCreateParams) -> JSONResponse:  # sync: runs in the threadpool
            try:
                return JSONResponse(dump(self.respond(body)))
            except RenderError as e:
                return JSONResponse({"error": {"message": f"policy endpoint: {e}", "type": "invalid_request_error"}}, status_code=400)

        @app.get("/v1/models")
        def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "ngym"}]}

        return app

    def start(self, timeout_s: float = 30.0) -> str:
        config = uvicorn.Config(self.app(), host=self.host, port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)  # in a thread, uvicorn leaves the signal handlers alone
        self._thread = threading.Thread(target=self._server.run, name="ngym-policy-endpoint", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the policy endpoint did not start on {self.host}:{self.port} (port taken?)")
            time.sleep(0.02)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._server = None

    def __enter__(self) -> PolicyEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
