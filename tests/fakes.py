"""Fakes shared by the tests: build servers from settings, and a model that replays a script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request

from ngym.models.server import ModelServer
from ngym.server.base import Server
from ngym.server.client import ServerClient
from ngym.wire.responses import FunctionCall, Item, Message, OutputText, Response, ResponseCreateParams, Usage, new_id

S = TypeVar("S", bound=Server[Any])

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO.parent / "shared" / "compat" / "reference-v0.2.1"


def make(cls: type[S], name: str, **settings: Any) -> S:
    """A server instance configured as its YAML section would configure it."""
    config = cls.config_type().model_validate({"name": name, "entrypoint": "app.py", **settings})
    return cls(config, ServerClient({}))


def ref(server_type: str, name: str) -> dict[str, str]:
    return {"type": server_type, "name": name}


def say(text: str) -> Message:
    return Message(type="message", id=new_id("msg"), role="assistant", status="completed", content=[OutputText(text=text)])


def call(name: str, arguments: str | dict[str, Any]) -> FunctionCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return FunctionCall(type="function_call", call_id=new_id("call"), name=name, arguments=args, id=new_id("fc"))


class QueueModel(ModelServer):
    """Answers each call with the next scripted turn; records every request it got."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns: list[list[Item]] = []
        self.requests: list[ResponseCreateParams] = []
        self.usage = Usage(input_tokens=10, output_tokens=5, total_tokens=15)

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        self.requests.append(body)
        output = self.turns.pop(0) if self.turns else [say("done")]
        return Response(model="queue", output=output, usage=self.usage)


def compat_rows(env: str, name: str = "example.jsonl") -> list[dict[str, Any]]:
    path = COMPAT / env / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
