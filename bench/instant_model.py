"""An instant OpenAI-compatible model server for benchmarks: the scripted policy
(``ngym.devkit.testing.scripted_policy``, which solves the example environments) behind a bare
asyncio HTTP/1.1 server — no web framework, so the stand-in for vLLM costs as little CPU as it can
and the benchmark measures the client side.

    python bench/instant_model.py --port 8321 [--delay-s 0.05]

Routes: ``POST /v1/responses``, ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /stats``
(calls answered). Keep-alive connections; bodies by Content-Length (what OpenAI clients send).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import cast

import orjson
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngym.devkit.testing.scripted_openai import chat_reply, responses_reply
from ngym.wire.chat import ChatCompletionCreateParams
from ngym.wire.responses import ResponseCreateParams
from ngym.wire.rows import dump

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large"}
MAX_BODY = 64 * 1024 * 1024


class Policy:
    def __init__(self, model: str, delay_s: float) -> None:
        self.model = model
        self.delay_s = delay_s
        self.calls = 0
        self.connections = 0

    def answer(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"POST" and path == b"/v1/responses":
            self.calls += 1
            return 200, orjson.dumps(dump(responses_reply(ResponseCreateParams.model_validate_json(body), self.model)))
        if method == b"POST" and path == b"/v1/chat/completions":
            self.calls += 1
            return 200, orjson.dumps(dump(chat_reply(ChatCompletionCreateParams.model_validate_json(body), self.model)))
        if method == b"GET" and path == b"/v1/models":
            return 200, orjson.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]})
        if method == b"GET" and path in (b"/", b"/stats"):
            return 200, orjson.dumps({"calls": self.calls, "connections": self.connections, "pid": os.getpid()})
        return 404, orjson.dumps({"error": {"message": f"no route {method.decode()} {path.decode()}"}})


class HTTPProtocol(asyncio.Protocol):
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a delayed answer is pending: later requests wait in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        self.policy.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            try:
                method, target, _version = head[0].split(b" ", 2)
            except ValueError:
                self.reply(400, b'{"error":{"message":"bad request line"}}', close=True)
                return
            length = 0
            close = False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip() or 0)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length > MAX_BODY:
                self.reply(413, b'{"error":{"message":"body too large"}}', close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            try:
                status, payload = self.policy.answer(method, target.split(b"?", 1)[0], body)
            except (ValidationError, ValueError) as e:
                status, payload = 400, orjson.dumps({"error": {"message": str(e)[:2000]}})
            if self.policy.delay_s and status == 200 and method == b"POST":
                self.busy = True
                asyncio.get_running_loop().call_later(self.policy.delay_s, self.delayed, status, payload, close)
                return
            self.reply(status, payload, close)

    def delayed(self, status: int, payload: bytes, close: bool) -> None:
        self.busy = False
        self.reply(status, payload, close)
        self.process()

    def reply(self, status: int, payload: bytes, close: bool = False) -> None:
        if self.transport is None:
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, REASONS.get(status, b"Error"), len(payload), b"connection: close\r\n" if close else b"", payload)
        )
        if close:
            self.transport.close()


async def serve(host: str, port: int, model: str, delay_s: float) -> None:
    policy = Policy(model, delay_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPProtocol(policy), host, port, backlog=4096)
    print(f"instant model at http://{host}:{port}/v1 (delay {delay_s:g} s), pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8321)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--delay-s", type=float, default=0.0, help="seconds each model call waits before answering")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port, args.model, args.delay_s))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
