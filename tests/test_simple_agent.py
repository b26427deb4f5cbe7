"""simple_agent through its HTTP routes, with the resources and model servers in-process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.env import Verdict, tool
from ngym.wire.responses import Response
from resources_servers.example_multi_step.app import MultiStepResourcesServer
from resources_servers.example_session_state_mgmt.app import CounterResourcesServer
from responses_api_agents.simple_agent.app import SimpleAgent
from responses_api_models.scripted_model.app import ScriptedModel
from tests.fakes import QueueModel, call, make, ref, say

pytestmark = pytest.mark.anyio


def deploy(resources, model, **agent_settings):
    agent = make(
        SimpleAgent,
        "agent",
        resources_server=ref("resources_servers", "env"),
        model_server=ref("responses_api_models", "model"),
        **agent_settings,
    )
    client = wire({"env": resources, "model": model, "agent": agent})
    return client


def multi_step_row() -> dict:
    return json.loads(
        open("resources_servers/example_multi_step/data/example.jsonl").readline()
    )


async def test_run_solves_multi_step_with_scripted_policy() -> None:
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), make(ScriptedModel, "model"))
    answer = await client.post("agent", "/run", json=multi_step_row())
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["reward"] == 1.0
    assert result["parsed_synonym_values"] == [711, 407]
    kinds = [item["type"] for item in result["response"]["output"]]
    assert kinds == ["function_call", "function_call_output"] * 3 + ["message"]


async def test_invalid_tool_arguments_go_back_to_the_model() -> None:
    model = make(QueueModel, "model")
    model.turns = [
        [call("extract_synonym_values", "{not json")],
        [call("extract_synonym_values", {"synonym_values": [711, 407]})],
        [say("done")],
    ]
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), model)
    answer = await client.post("agent", "/run", json=multi_step_row())
    assert answer.status_code == 200, answer.text
    output = answer.json()["response"]["output"]
    first_output = json.loads(output[1]["output"])
    assert "Invalid tool call arguments" in first_output["error"]
    assert answer.json()["reward"] == 1.0
    # the model saw the error output on its second call
    second = model.requests[1].input_items()
    assert any(getattr(i, "type", None) == "function_call_output" and "Invalid" in str(i.output) for i in second)


async def test_unknown_tool_and_tool_error_are_outputs_not_crashes() -> None:
    model = make(QueueModel, "model")
    model.turns = [[call("no_such_tool", {})], [call("get_synonym_value", {"wrong": 1})], [say("ok")]]
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), model)
    result = (await client.post("agent", "/run", json=multi_step_row())).json()
    outputs = [i["output"] for i in result["response"]["output"] if i["type"] == "function_call_output"]
    assert "Unknown tool 'no_such_tool'" in outputs[0]
    assert "detail" in json.loads(outputs[1])  # the tool's 422 body, as the reference passes it on
    assert result["reward"] == 0.0


async def test_usage_is_summed_once_per_call() -> None:
    model = make(QueueModel, "model")
    model.turns = [[call("get_synonym_value", {"synonym": "Warm"})], [say("done")]]
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), model)
    result = (await client.post("agent", "/run", json=multi_step_row())).json()
    usage = result["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (20, 10, 30)


async def test_max_steps_is_honoured() -> None:
    model = make(QueueModel, "model")
    model.turns = [[call("get_synonym_value", {"synonym": "Warm"})] for _ in range(10)]
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), model, max_steps=3)
    result = (await client.post("agent", "/run", json=multi_step_row())).json()
    assert len(model.requests) == 3
    assert sum(1 for i in result["response"]["output"] if i["type"] == "function_call") == 3


async def test_model_error_is_a_typed_failure() -> None:
    # no model server at all: the agent reports a retryable model_error, not a reward
    agent = make(
        SimpleAgent,
        "agent",
        resources_server=ref("resources_servers", "env"),
        model_server=ref("responses_api_models", "model"),
    )
    client = wire({"env": make(MultiStepResourcesServer, "env", domain="other"), "agent": agent})
    client.urls["model"] = "http://model"  # known name, nothing answers
    answer = await client.post("agent", "/run", json=multi_step_row())
    assert answer.status_code == 502
    body = answer.json()
    assert body["kind"] == "model_error" and body["retryable"] is True
    assert "reward" not in body


async def test_sessions_are_isolated_under_concurrency() -> None:
    client = deploy(make(CounterResourcesServer, "env", domain="agent"), make(ScriptedModel, "model"))
    template = json.loads(open("resources_servers/example_session_state_mgmt/data/example.jsonl").readline())
    rows = []
    for i in range(1000):
        a, b, start = i, 2 * i + 1, 1000 + i
        rows.append(
            {
                "responses_create_params": template["responses_create_params"]
                | {"input": [{"role": "user", "content": f"add {a} then add {b} then get the count"}]},
                "initial_count": start,
                "expected_count": start + a + b,
            }
        )
    answers = await asyncio.gather(*(client.post("agent", "/run", json=row) for row in rows))
    assert [a.status_code for a in answers] == [200] * len(rows)
    assert [a.json()["reward"] for a in answers] == [1.0] * len(rows)


async def test_agent_v1_responses_returns_whole_episode() -> None:
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), make(ScriptedModel, "model"))
    params = multi_step_row()["responses_create_params"]
    answer = await client.post("agent", "/v1/responses", json=params)
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "response"
    assert [i["type"] for i in body["output"]][-1] == "message"
    assert len(body["output"]) == 7


class FaultyEnv(MultiStepResourcesServer):
    """Tools that raise, hang or answer plain text; a verifier that raises (when told to)."""

    break_verify = False

    @tool
    async def explode(self) -> dict[str, Any]:
        raise RuntimeError("tool blew up")

    @tool
    async def hang(self) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    @tool
    async def plain(self) -> Any:
        from fastapi.responses import PlainTextResponse

        return PlainTextResponse("not json at all")

    async def verify(self, response: Response) -> Verdict:
        if self.break_verify:
            raise ValueError("verifier bug")
        return await super().verify(response)


def faulty_row(**metadata: str) -> dict:
    row = multi_step_row()
    params = row["responses_create_params"]
    params["tools"] = params["tools"] + [
        {"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}} for n in ("explode", "hang", "plain")
    ]
    if metadata:
        params["metadata"] = metadata
    return row


async def test_tool_that_raises_hangs_or_answers_text_is_an_output_and_the_episode_goes_on() -> None:
    model = make(QueueModel, "model")
    model.turns = [[call("explode", {})], [call("hang", {})], [call("plain", {})], [say("done")]]
    client = deploy(make(FaultyEnv, "env", domain="other"), model, tool_timeout_s=0.2)
    answer = await client.post("agent", "/run", json=faulty_row())
    assert answer.status_code == 200, answer.text
    outputs = [i["output"] for i in answer.json()["response"]["output"] if i["type"] == "function_call_output"]
    assert "RuntimeError: tool blew up" in json.loads(outputs[0])["error"]
    assert "timed out after 0.2 s" in json.loads(outputs[1])["error"]
    assert outputs[2] == "not json at all"
    assert len(model.requests) == 4  # the model saw every one of them and went on


async def test_verifier_that_raises_is_a_typed_failure() -> None:
    env = make(FaultyEnv, "env", domain="other")
    env.break_verify = True
    client = deploy(env, make(ScriptedModel, "model"))
    answer = await client.post("agent", "/run", json=faulty_row(**{"break": "verify"}))
    assert answer.status_code == 502
    body = answer.json()
    assert body["kind"] == "verifier_error" and "verifier bug" in body["error"]
    assert "reward" not in body


async def test_flaky_model_calls_are_retried_inside_the_episode() -> None:
    class Flaky(QueueModel):
        async def responses(self, body, request):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls % 2:
                from ngym.errors import RolloutError

                raise RolloutError("overloaded", kind="model_error", retryable=True, status=503)
            return await super().responses(body, request)

    model = make(Flaky, "model")
    model.turns = [[call("extract_synonym_values", {"synonym_values": [711, 407]})], [say("done")]]
    client = deploy(make(MultiStepResourcesServer, "env", domain="other"), model)
    answer = await client.post("agent", "/run", json=multi_step_row())
    assert answer.status_code == 200 and answer.json()["reward"] == 1.0
    assert model.calls == 4
