"""An OpenAI-compatible HTTP server (``/v1/responses``, ``/v1/chat/completions``, ``/v1/models``)
answering with :mod:`ngym.devkit.testing.scripted_policy`: the stand-in for a remote LLM API.

    python -m ngym.devkit.testing.scripted_openai --port 8321 [--delay-s 0.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from fastapi import FastAPI, Header, HTTPException

from ngym.devkit.testing.scripted_policy import next_items
from ngym.wire.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionCreateParams,
    ChatMessage,
    ToolCall,
    ToolCallFunction,
)
from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Item,
    Message,
    Response,
    ResponseCreateParams,
    Usage,
)
from ngym.wire.rows import dump


def _usage(body: ResponseCreateParams, output: list[Item]) -> Usage:
    prompt = len(json.dumps(dump(body)).split())
    generated = sum(len(json.dumps(dump(i)).split()) for i in output)
    return Usage(input_tokens=prompt, output_tokens=generated, total_tokens=prompt + generated)


def responses_reply(body: ResponseCreateParams, model: str = "scripted") -> Response:
    """The scripted policy's answer to one ``/v1/responses`` request."""
    output = next_items(body)
    return Response(
        model=body.model or model,
        output=output,
        status="completed",
        tools=body.tools or [],
        parallel_tool_calls=body.parallel_tool_calls is not False,
        usage=_usage(body, output),
    )


def chat_reply(body: ChatCompletionCreateParams, model: str = "scripted") -> ChatCompletion:
    """The scripted policy's answer to one ``/v1/chat/completions`` request."""
    items: list[Item] = []
    for m in body.messages:
        if m.role == "tool":
            items.append(FunctionCallOutput(call_id=m.tool_call_id or "", output=str(m.content)))
            continue
        if m.content:
            text = m.content if isinstance(m.content, str) else "".join(str(p.get("text") or "") for p in m.content)
            items.append(Message(role="user" if m.role == "user" else ("assistant" if m.role == "assistant" else "system"), content=text))
        for call in m.tool_calls or []:
            items.append(FunctionCall(call_id=call.id, name=call.function.name, arguments=call.function.arguments))
    tools = [FunctionTool(name=t.function.name, parameters=t.function.parameters) for t in body.tools or []]
    out = next_items(ResponseCreateParams(input=items, tools=tools, parallel_tool_calls=body.parallel_tool_calls))
    reply = "".join(i.text() for i in out if isinstance(i, Message)) or None
    calls = [
        ToolCall(id=i.call_id, function=ToolCallFunction(name=i.name, arguments=i.arguments))
        for i in out
        if isinstance(i, FunctionCall)
    ]
    message = ChatMessage(role="assistant", content=reply, tool_calls=calls or None)
    return ChatCompletion(
        model=body.model or model,
        choices=[ChatChoice(message=message, finish_reason="tool_calls" if calls else "stop")],
    )


def build_app(
    model: str = "scripted", delay_s: float = 0.0, api_key: str | None = None, fail_every: int = 0
) -> FastAPI:
    """``fail_every=N``: every Nth call answers 500 or 429 (alternately) instead, for fault tests."""
    app = FastAPI(title="scripted OpenAI-compatible model")
    calls = {"total": 0, "failed": 0}

    def maybe_fail() -> None:
        calls["total"] += 1
        if fail_every and calls["total"] % fail_every == 0:
            calls["failed"] += 1
            status = 500 if calls["failed"] % 2 else 429
            raise HTTPException(status, f"injected failure {calls['failed']} (HTTP {status})")

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return calls

    def check_key(authorization: str | None) -> None:
        if api_key and authorization != f"Bearer {api_key}":
            raise HTTPException(401, "invalid API key")

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "ngym"}]}

    @app.post("/v1/responses", response_model_exclude_none=True)
    async def responses(body: ResponseCreateParams, authorization: str | None = Header(None)) -> Response:
        check_key(authorization)
        maybe_fail()
        if delay_s:
            await asyncio.sleep(delay_s)
        return responses_reply(body, model)

    @app.post("/v1/chat/completions", response_model_exclude_none=True)
    async def chat(body: ChatCompletionCreateParams, authorization: str | None = Header(None)) -> ChatCompletion:
        check_key(authorization)
        maybe_fail()
        if delay_s:
            await asyncio.sleep(delay_s)
        return chat_reply(body, model)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8321)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--delay-s", type=float, default=0.0, help="seconds each call waits before answering")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth call fails with 500 or 429 (fault tests)")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        build_app(args.model, args.delay_s, args.api_key, args.fail_every), host=args.host, port=args.port, log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
