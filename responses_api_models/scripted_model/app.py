"""scripted_model: a model server that answers with :mod:`ngym.devkit.testing.scripted_policy` in-process
(no upstream API). For tests, demos without a model, and overhead benchmarks (``delay_s`` adds a
fixed latency per call)."""

from __future__ import annotations

import asyncio

from fastapi import Request
from pydantic import Field

from ngym.config.schema import ServerConfig
from ngym.models.server import ModelServer
from ngym.devkit.testing.scripted_policy import next_items
from ngym.wire.responses import Response, ResponseCreateParams, Usage


class ScriptedModelConfig(ServerConfig):
    #: seconds each call waits before answering
    delay_s: float = 0.0
    #: calls answered at once (a GPU server's slots); more wait their turn. None: no bound
    max_concurrent_calls: int | None = Field(None, ge=1)
    model_name: str = "scripted"


class ScriptedModel(ModelServer):
    config: ScriptedModelConfig

    def model_name(self) -> str:
        return self.config.model_name

    _slots: asyncio.Semaphore | None = None

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        if self.config.max_concurrent_calls:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.config.max_concurrent_calls)
            async with self._slots:
                if self.config.delay_s:
                    await asyncio.sleep(self.config.delay_s)
        elif self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        output = next_items(body)
        return Response(
            model=self.config.model_name,
            output=output,
            status="completed",
            tools=body.tools or [],
            parallel_tool_calls=body.parallel_tool_calls is not False,
            usage=Usage(input_tokens=1, output_tokens=1, total_tokens=2),
        )


if __name__ == "__main__":
    ScriptedModel.run_webserver()
