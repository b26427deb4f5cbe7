"""simple_agent: call the model, run the tools it asks for, repeat until it answers; then verify.

A row without ``responses_create_params.tools`` gets the tools the environment declares (its
``/seed_session`` answer), and they are recorded in the rollout. Differences from the reference
(on purpose): invalid tool-call arguments, unknown tools and tool
timeouts go back to the model as an error output and the episode continues; usage is summed once
per model call; the loop also stops on any ``incomplete_details`` and when a model turn has no
tool calls; ``/run`` runs the episode in-process instead of calling its own HTTP route.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ngym.env.agent import Agent, Episode, call_server
from ngym.config.schema import ServerConfig, ServerRef
from ngym.errors import FailureKind, RolloutError
from ngym.server.client import Cookies
from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Item,
    Response,
    ResponseCreateParams,
    Usage,
)
from ngym.wire.rows import RunRequest, dump


class SimpleAgentConfig(ServerConfig):
    resources_server: ServerRef
    model_server: ServerRef
    max_steps: int | None = None
    #: seconds a single tool call may take before the model is told it timed out
    tool_timeout_s: float = 300.0
    #: attempts per model call for transient failures (connection errors, 429, 5xx)
    model_max_attempts: int = 3
    #: seconds one model call may take: a stalled model fails the rollout as a ``timeout`` naming
    #: the model server (the collector tries a timed-out rollout twice: 2 × 300 s at most)
    model_timeout_s: float = 300.0


def _declared_tools(seed_answer: bytes) -> list[dict[str, Any]]:
    """The function tools an environment's ``/seed_session`` answer declares (none for a
    reference-style server, which answers ``{}``)."""
    try:
        answer = orjson.loads(seed_answer) if seed_answer else None
    except orjson.JSONDecodeError:
        return []
    tools = answer.get("tools") if isinstance(answer, dict) else None
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def _error_output(message: str) -> str:
    return orjson.dumps({"error": message}).decode()


class SimpleAgent(Agent):
    config: SimpleAgentConfig

    async def _call_model(self, request: dict[str, Any], cookies: Cookies) -> Response:
        """One model call; ``request`` is the create-params body as JSON-ready data."""
        name = self.config.model_server.name
        answer = await call_server(
            self.server_client, name, "/v1/responses", at=FailureKind.MODEL_ERROR, role="model server",
            what="the model call", json=request, cookies=cookies, attempts=self.config.model_max_attempts,
            timeout=self.config.model_timeout_s, timeout_setting="model_timeout_s",
        )
        try:
            return Response.model_validate_json(answer.content)
        except ValueError as e:
            raise RolloutError(
                f"model server {name!r} returned an invalid Response: {e}", kind=FailureKind.MODEL_ERROR
            ) from None

    async def _call_tool(self, call: FunctionCall, tools: set[str], cookies: Cookies) -> str:
        if tools and call.name not in tools:
            return _error_output(f"Unknown tool {call.name!r}. Available tools: {sorted(tools)}.")
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as e:
            return _error_output(f"Invalid tool call arguments: {e}. Arguments must be a JSON object.")
        if not isinstance(arguments, dict):
            return _error_output("Invalid tool call arguments: expected a JSON object.")
        try:
            answer = await call_server(
                self.server_client, self.config.resources_server.name, f"/{call.name}", at=FailureKind.RESOURCES_ERROR,
                role="resources server", what=f"tool {call.name!r}", json=arguments, cookies=cookies,
                timeout=self.config.tool_timeout_s, timeout_setting="tool_timeout_s", check_status=False,
            )
        except RolloutError as e:
            if e.kind is not FailureKind.TIMEOUT:
                raise
            return _error_output(f"Tool {call.name!r} timed out after {self.config.tool_timeout_s:g} s.")
        return answer.text

    async def episode(self, body: ResponseCreateParams, resources_cookies: Cookies) -> Episode:
        # each item is made JSON-ready once, not again at every later model call of the episode
        request = dump(body)
        request["input"] = [dump(item) for item in body.input_items()]
        tools = {tool.name for tool in body.tools or []}
        new_outputs: list[Item] = []
        usage: Usage | None = None
        model_cookies: Cookies = {}
        resources_cookies = dict(resources_cookies)
        step = 0
        while True:
            step += 1
            response = await self._call_model(request, model_cookies)
            new_outputs.extend(response.output)
            request["input"].extend(dump(item) for item in response.output)
            if response.usage is not None:
                usage = response.usage if usage is None else usage + response.usage
            calls = response.function_calls()
            if response.incomplete_details is not None and response.incomplete_details.reason:
                break
            if not calls:
                break
            for call in calls:
                output = await self._call_tool(call, tools, resources_cookies)
                item = FunctionCallOutput(type="function_call_output", call_id=call.call_id, output=output)
                new_outputs.append(item)
                request["input"].append(dump(item))
            if self.config.max_steps and step >= self.config.max_steps:
                break
        final = response.model_copy(update={"output": new_outputs, "usage": usage})
        return Episode(final, resources_cookies, model_cookies)

    async def run(self, body: RunRequest, cookies: Cookies) -> bytes:
        name = self.config.resources_server.name
        row = body.model_dump(mode="json", exclude_unset=True)
        cookies = dict(cookies)
        seeded = await call_server(
            self.server_client, name, "/seed_session", at=FailureKind.RESOURCES_ERROR, role="resources server",
            what="/seed_session", json=row, cookies=cookies,
        )
        params = body.responses_create_params
        if not params.tools:  # the row offers none: the tools the environment declares (its /seed_session answer)
            declared = _declared_tools(seeded.content)
            if declared:
                params = params.model_copy(update={"tools": [FunctionTool.model_validate(t) for t in declared]})
                row["responses_create_params"]["tools"] = declared  # recorded in the rollout
        episode = await self.episode(params, cookies)
        row["response"] = dump(episode.response)
        verified = await call_server(
            self.server_client, name, "/verify", at=FailureKind.VERIFIER_ERROR, role="resources server",
            what="/verify", json=row, cookies=dict(episode.resources_cookies),
        )
        return verified.content  # the verifier's JSON, passed through without a parse and re-dump


if __name__ == "__main__":
    SimpleAgent.run_webserver()
