"""A fake model backend for tests: llama.cpp's native routes (``/props``, ``/apply-template``,
``/tokenize``, ``/completion``) and an OpenAI ``/v1/chat/completions`` in either llama.cpp's or
vLLM's flavour (token ids as integer ``id`` or as ``"token_id:N"``; vLLM's ``/tokenize`` takes
chat messages). Replies are scripted; every request is recorded.

The tokenizer maps Qwen's special tokens to their real ids and every other character to its code
point; the chat template is a small Qwen2.5-like one (tools in the system turn, tool calls as
``<tool_call>`` tags, tool outputs as ``<tool_response>`` in a user turn).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SPECIAL = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<|endoftext|>": 151643, "<tool_call>": 151657, "</tool_call>": 151658}
SPECIAL_TEXT = {v: k for k, v in SPECIAL.items()}
EOS = SPECIAL["<|im_end|>"]
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL) + ")")

OVERFLOW_LLAMA = {
    "error": {
        "code": 400,
        "message": "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9000,
        "n_ctx": 8192,
    }
}
OVERFLOW_VLLM = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
    "type": "BadRequestError",
    "code": 400,
}


def tokenize(text: str) -> list[int]:
    ids: list[int] = []
    for piece in _SPLIT.split(text):
        if piece in SPECIAL:
            ids.append(SPECIAL[piece])
        else:
            ids.extend(ord(c) for c in piece)
    return ids


def detokenize(ids: list[int]) -> str:
    return "".join(SPECIAL_TEXT.get(i, chr(i) if i < 0x110000 else "") for i in ids)


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """A Qwen2.5-like chat template, generation prompt included."""
    out: list[str] = []
    first_system = bool(messages) and messages[0].get("role") in ("system", "developer")
    system = _content(messages[0]) if first_system else "You are a fake assistant."
    if tools:
        system += "\n\n# Tools\n<tools>\n" + "\n".join(json.dumps(t) for t in tools) + "\n</tools>"
    out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    rest = messages[1:] if first_system else messages
    for index, message in enumerate(rest):
        role = message.get("role")
        if role == "tool":
            if index == 0 or rest[index - 1].get("role") != "tool":
                out.append("<|im_start|>user")
            out.append(f"\n<tool_response>\n{_content(message)}\n</tool_response>")
            if index == len(rest) - 1 or rest[index + 1].get("role") != "tool":
                out.append("<|im_end|>\n")
        elif role == "assistant":
            out.append("<|im_start|>assistant")
            if _content(message):
                out.append("\n" + _content(message))
            for call in message.get("tool_calls") or []:
                fn = call["function"]
                out.append(f'\n<tool_call>\n{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}\n</tool_call>')
            out.append("<|im_end|>\n")
        else:
            out.append(f"<|im_start|>{role}\n{_content(message)}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


class FakeLlama:
    """``FakeLlama().app`` is the ASGI app; push replies onto ``replies`` (text, or a dict with
    ``content`` / ``reasoning_content`` / ``tool_calls`` for the chat route)."""

    def __init__(self, flavor: Literal["llama_cpp", "vllm"] = "llama_cpp", delay_s: float = 0.0) -> None:
        self.flavor = flavor
        self.delay_s = delay_s
        self.replies: list[str | dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.overflow = False
        self.in_flight = 0
        self.max_in_flight = 0
        self._last_prompt: list[int] = []
        self.app = self._build()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def _next_reply(self) -> str | dict[str, Any]:
        return self.replies.pop(0) if self.replies else "Done."

    async def _generate(self, prompt: list[int], n_predict: int | None, text: str, stop: list[str] | None = None) -> dict[str, Any]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        generated = tokenize(text) + [EOS]
        stop_type = "eos"
        word = next((w for w in stop or [] if w and w in text), None)
        if word is not None:
            # as llama-server does: generation ends with the stop word's tokens, the content without
            # it, and (not streamed) the logprobs lose as many entries as the stop word has tokens
            generated, stop_type = tokenize(text[: text.index(word) + len(word)]), "word"
        if n_predict is not None and 0 < n_predict < len(generated):
            generated, stop_type = generated[:n_predict], "limit"
        cached = 0
        for a, b in zip(self._last_prompt, prompt):
            if a != b:
                break
            cached += 1
        self._last_prompt = prompt + generated
        probs = [
            {"id": t, "token": detokenize([t]) if t != EOS else "", "logprob": -0.01 * (i + 1)}
            for i, t in enumerate(generated)
        ]
        content = detokenize([t for t in generated if t != EOS])
        if stop_type == "word" and word is not None:
            content = content[: -len(word)]
            probs = probs[: len(probs) - min(len(probs), len(tokenize(word)))]
        return {
            "content": content,
            "tokens": generated,
            "completion_probabilities": probs,
            "stop_type": stop_type,
            "tokens_predicted": len(generated),
            "tokens_evaluated": len(prompt),
            "timings": {"cache_n": cached, "prompt_n": len(prompt) - cached},
        }

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/props")
        async def props() -> dict[str, Any]:
            return {"eos_token": "<|im_end|>", "total_slots": 4}

        @app.post("/apply-template")
        async def apply_template(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(("/apply-template", body))
            return {"prompt": render(body["messages"], body.get("tools"))}

        @app.post("/tokenize")
        async def tokenize_route(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(("/tokenize", body))
            if "content" in body:
                return {"tokens": tokenize(body["content"])}
            if self.flavor == "vllm" and "messages" in body:
                return {"tokens": tokenize(render(body["messages"], body.get("tools"))), "count": 0}
            return {"tokens": []}

        @app.post("/completion")
        async def completion(request: Request) -> Any:
            body = await request.json()
            self.requests.append(("/completion", body))
            if self.overflow:
                return JSONResponse(OVERFLOW_LLAMA, status_code=400)
            reply = self._next_reply()
            text = reply if isinstance(reply, str) else str(reply.get("content") or "")
            stop = body.get("stop")
            return await self._generate(list(body["prompt"]), body.get("n_predict"), text, [stop] if isinstance(stop, str) else stop)

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            body = await request.json()
            self.requests.append(("/v1/chat/completions", body))
            if self.overflow:
                return JSONResponse(OVERFLOW_LLAMA if self.flavor == "llama_cpp" else OVERFLOW_VLLM, status_code=400)
            reply = self._next_reply()
            message: dict[str, Any] = {"role": "assistant"}
            if isinstance(reply, str):
                message["content"] = reply
            else:
                message.update(reply)
            prompt = tokenize(render(body["messages"], body.get("tools")))
            result = await self._generate(prompt, body.get("max_tokens"), _content(message))
            entries = []
            for p in result["completion_probabilities"]:
                if self.flavor == "vllm":
                    entries.append({"token": f"token_id:{p['id']}", "logprob": p["logprob"]})
                else:
                    entries.append({"id": p["id"], "token": p["token"], "logprob": p["logprob"]})
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "finish_reason": "length" if result["stop_type"] == "limit" else ("tool_calls" if message.get("tool_calls") else "stop"),
            }
            if body.get("logprobs"):
                choice["logprobs"] = {"content": entries}
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": len(result["tokens"]),
                    "total_tokens": len(prompt) + len(result["tokens"]),
                },
            }

        return app
