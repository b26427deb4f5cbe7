"""local_model in-process against a fake llama-server: tool calls parsed into items, token ids and
logprobs, token-faithful prompts across calls, forced tool calls, queueing, overflow, truncation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ngym.server.client import ServerClient
from ngym.devkit.testing.fake_llama import EOS, FakeLlama, render, tokenize
from ngym.rollout.tokens import check_token_faithfulness
from responses_api_models.local_model.app import LocalModel, LocalModelConfig
from tests.llama.test_grammar import admits

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "",
    "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
}
ROW_INPUT = [{"role": "developer", "content": "You are a helpful assistant."}, {"role": "user", "content": "what's it like in sf?"}]


def tool_call(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def make_model(fake: FakeLlama, **settings: Any) -> LocalModel:
    config = LocalModelConfig.model_validate({"name": "policy_model", "entrypoint": "app.py", **settings})
    model = LocalModel(config, ServerClient({}))
    model.attach("http://llama", httpx.ASGITransport(app=fake.app))
    return model


def client_of(model: LocalModel) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=model.build_app()), base_url="http://policy_model")


async def ask(model: LocalModel, **body: Any) -> dict[str, Any]:
    async with client_of(model) as client:
        answer = await client.post("/v1/responses", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"name": "get_weather", "arguments": {"city": "San Francisco"}}\n```',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "San Francisco"}}\n</tool_call>',
        '{"name": "get_weather", "arguments": {"city": "San Francisco"}}',
    ],
    ids=["fence", "tags", "bare"],
)
async def test_text_tool_calls_become_function_call_items(text: str) -> None:
    fake = FakeLlama()
    fake.replies.append(text)
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER])
    assert [i["type"] for i in body["output"]] == ["function_call"]
    call = body["output"][0]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "San Francisco"}
    assert call["call_id"].startswith("call_") and call["id"] == call["call_id"] and call["status"] == "completed"
    # the exact generated ids (text + end of turn) and one logprob per id
    assert call["generation_token_ids"] == tokenize(text) + [EOS]
    assert call["generation_log_probs"] == [pytest.approx(-0.01 * (i + 1)) for i in range(len(tokenize(text)) + 1)]


async def test_prose_and_call_give_a_message_then_the_call_with_tokens_on_the_call() -> None:
    fake = FakeLlama()
    fake.replies.append('Let me check.\n```json\n{"name": "get_weather", "arguments": {"city": "SF"}}\n```')
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER])
    assert [i["type"] for i in body["output"]] == ["message", "function_call"]
    assert body["output"][0]["content"][0]["text"] == "Let me check."
    assert "prompt_token_ids" not in body["output"][0] and "prompt_token_ids" in body["output"][1]


@pytest.mark.parametrize(
    "text",
    ['I would call {"name": "unknown_tool", "arguments": {}} but it does not exist.', "Use a dict like {'a': 1} here.", "It is cold {in} SF."],
)
async def test_ordinary_text_is_left_alone(text: str) -> None:
    fake = FakeLlama()
    fake.replies.append(text)
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER])
    assert [i["type"] for i in body["output"]] == ["message"] and body["output"][0]["content"][0]["text"] == text


async def test_prompt_ids_are_the_rendered_template_with_developer_as_system() -> None:
    fake = FakeLlama()
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER])
    expected_messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "what's it like in sf?"}]
    chat_tool = {"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")}}
    assert body["output"][-1]["prompt_token_ids"] == tokenize(render(expected_messages, [chat_tool]))
    completion = fake.bodies("/completion")[0]
    assert completion["prompt"] == body["output"][-1]["prompt_token_ids"]
    assert completion["return_tokens"] is True and completion["n_probs"] == 1
    assert completion["top_k"] == 0 and completion["min_p"] == 0.0 and completion["temperature"] == 1.0


async def test_multi_turn_prompts_extend_previous_prompt_plus_generation() -> None:
    """Call 2's prompt = call 1's prompt + generated ids + the template's rendering of the tool output.
    Re-rendering the history would not be (the template writes the call as <tool_call> tags)."""
    fake = FakeLlama()
    generated = '```json\n{"name": "get_weather", "arguments": {"city": "SF"}}\n```'
    fake.replies += [generated, "It is cold in SF."]
    model = make_model(fake)
    first = await ask(model, input=ROW_INPUT, tools=[WEATHER])
    call = first["output"][-1]
    history = [*ROW_INPUT, *first["output"], {"type": "function_call_output", "call_id": call["call_id"], "output": '{"weather": "cold"}'}]
    second = await ask(model, input=history, tools=[WEATHER])
    prompt2 = second["output"][-1]["prompt_token_ids"]
    trajectory = call["prompt_token_ids"] + call["generation_token_ids"]
    assert prompt2[: len(trajectory)] == trajectory
    assert prompt2[len(trajectory):] == tokenize("\n<|im_start|>user\n<tool_response>\n{\"weather\": \"cold\"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert second["token_faithfulness"] == {"ok": True, "calls": 2, "violations": []}
    assert check_token_faithfulness([*first["output"], *second["output"]]).ok
    # what a re-rendering of the whole history would have sent: not an extension of the trajectory
    rerendered = tokenize(render([{"role": "system", "content": "x"}], None))
    assert fake.bodies("/completion")[1]["prompt"] == prompt2 != rerendered
    assert second["usage"]["input_tokens_details"]["cached_tokens"] == len(trajectory)


async def test_tool_calls_are_sampled_under_a_grammar_of_the_offered_tools() -> None:
    fake = FakeLlama()
    other = {**WEATHER, "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "PST"]}}, "required": ["zone"]}}
    model = make_model(fake)
    await ask(model, input=ROW_INPUT, tools=[WEATHER, other])
    grammar = fake.bodies("/completion")[0]["grammar"]
    assert "json_schema" not in fake.bodies("/completion")[0]
    assert admits(grammar, tool_call("get_weather", {"city": "SF"})) and admits(grammar, tool_call("get_time", {"zone": "UTC"}))
    assert admits(grammar, "It is sunny in SF.")  # tool_choice auto: a message is a possible turn
    assert not admits(grammar, tool_call("get_time", {"zone": "CET"})) and not admits(grammar, tool_call("get_date", {}))
    # parallel_tool_calls false: one call per turn
    two = tool_call("get_weather", {"city": "SF"}) + "\n" + tool_call("get_weather", {"city": "LA"})
    assert admits(grammar, two)
    await ask(model, input=ROW_INPUT, tools=[WEATHER, other], parallel_tool_calls=False)
    assert not admits(fake.bodies("/completion")[1]["grammar"], two)
    # no tools, or tool_choice none: no grammar
    await ask(model, input=ROW_INPUT)
    await ask(model, input=ROW_INPUT, tools=[WEATHER], tool_choice="none")
    assert all("grammar" not in b for b in fake.bodies("/completion")[2:])


async def test_tool_choice_naming_a_function_or_required_forces_a_call() -> None:
    fake = FakeLlama()
    other = {**WEATHER, "name": "get_time"}
    fake.replies.append(tool_call("get_weather", {"city": "SF"}))
    model = make_model(fake)
    body = await ask(model, input=ROW_INPUT, tools=[WEATHER, other], tool_choice={"type": "function", "name": "get_weather"})
    assert body["output"][0]["type"] == "function_call" and body["tool_choice"] == {"type": "function", "name": "get_weather"}
    named = fake.bodies("/completion")[0]["grammar"]
    assert admits(named, tool_call("get_weather", {"city": "SF"}))
    assert not admits(named, tool_call("get_time", {"city": "SF"})) and not admits(named, "It is sunny.")
    await ask(model, input=ROW_INPUT, tools=[WEATHER, other], tool_choice="required")
    required = fake.bodies("/completion")[1]["grammar"]
    assert admits(required, tool_call("get_time", {"city": "SF"})) and not admits(required, "It is sunny.")


async def test_lazy_grammar_leaves_text_free_until_the_call_tag_then_constrains_the_call() -> None:
    fake = FakeLlama()
    model = make_model(fake, tool_calls="lazy_grammar")
    await ask(model, input=ROW_INPUT, tools=[WEATHER])
    body = fake.bodies("/completion")[0]
    assert body["grammar_lazy"] is True
    assert body["grammar_triggers"] == [{"type": 1, "value": "<tool_call>"}] and body["preserved_tokens"] == ["<tool_call>"]
    # the grammar starts at the trigger: calls only, each an instance of the tool's schema
    assert admits(body["grammar"], tool_call("get_weather", {"city": "SF"}))
    assert not admits(body["grammar"], "It is sunny.") and not admits(body["grammar"], tool_call("get_weather", {"town": "SF"}))
    # a required call is constrained from the first token, as in grammar mode
    await ask(model, input=ROW_INPUT, tools=[WEATHER], tool_choice="required")
    required = fake.bodies("/completion")[1]
    assert "grammar_lazy" not in required and not admits(required["grammar"], "It is sunny.")


async def test_text_mode_forces_calls_with_a_json_schema_and_unknown_names_are_a_400() -> None:
    fake = FakeLlama()
    fake.replies.append('{"name": "get_weather", "arguments": {"city": "SF"}}')
    model = make_model(fake, tool_calls="text")
    body = await ask(model, input=ROW_INPUT, tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"})
    schema = fake.bodies("/completion")[0]["json_schema"]
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"] == WEATHER["parameters"]
    assert body["output"][0]["type"] == "function_call" and "grammar" not in fake.bodies("/completion")[0]
    other = {**WEATHER, "name": "get_time"}
    await ask(model, input=ROW_INPUT, tools=[WEATHER, other], tool_choice="required")
    names = [v["properties"]["name"]["const"] for v in fake.bodies("/completion")[1]["json_schema"]["anyOf"]]
    assert names == ["get_weather", "get_time"]
    await ask(model, input=ROW_INPUT, tools=[WEATHER])
    assert "json_schema" not in fake.bodies("/completion")[2] and "grammar" not in fake.bodies("/completion")[2]
    for mode in ("text", "grammar"):
        async with client_of(make_model(fake, tool_calls=mode)) as client:
            answer = await client.post("/v1/responses", json={"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}})
        assert answer.status_code == 400 and "'nope'" in answer.json()["error"]


async def test_tool_choice_none_and_no_parallel_calls() -> None:
    fake = FakeLlama()
    call = '{"name": "get_weather", "arguments": {"city": "SF"}}'
    fake.replies += [call, f"{call}\n{call.replace('SF', 'LA')}"]
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER], tool_choice="none")
    assert [i["type"] for i in body["output"]] == ["message"] and body["output"][0]["content"][0]["text"] == call
    body = await ask(make_model(fake), input=ROW_INPUT, tools=[WEATHER], parallel_tool_calls=False)
    assert [i["type"] for i in body["output"]] == ["function_call"]


async def test_concurrent_requests_queue_and_all_succeed() -> None:
    fake = FakeLlama(delay_s=0.02)
    model = make_model(fake, parallel=2)
    async with client_of(model) as client:
        answers = await asyncio.gather(*(client.post("/v1/responses", json={"input": f"q{i}"}) for i in range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert fake.max_in_flight == 2


async def test_context_overflow_is_an_empty_answer_and_truncation_is_incomplete() -> None:
    fake = FakeLlama()
    fake.overflow = True
    body = await ask(make_model(fake), input="long")
    assert body["output"][0]["content"][0]["text"] == "" and body.get("incomplete_details") is None
    fake = FakeLlama()
    fake.replies.append("a long answer that does not fit")
    body = await ask(make_model(fake), input="q", max_output_tokens=5)
    assert body["incomplete_details"] == {"reason": "max_output_tokens"} and body["status"] == "incomplete"
    assert body["output"][0]["content"][0]["text"] == "a lon" and len(body["output"][0]["generation_token_ids"]) == 5


async def test_without_token_information_no_token_fields() -> None:
    fake = FakeLlama()
    body = await ask(make_model(fake, return_token_id_information=False), input="q")
    assert "prompt_token_ids" not in body["output"][0] and "token_faithfulness" not in body
    assert fake.bodies("/completion")[0]["n_probs"] == 0


async def test_chat_completions_with_tools_logprobs_and_token_fields() -> None:
    fake = FakeLlama()
    fake.replies.append('<tool_call>\n{"name": "get_weather", "arguments": {"city": "SF"}}\n</tool_call>')
    model = make_model(fake)
    chat_tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["parameters"]}}
    async with client_of(model) as client:
        answer = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "sf?"}], "tools": [chat_tool], "logprobs": True})
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"].get("content") is None
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "SF"}'}
    assert [e["id"] for e in choice["logprobs"]["content"]] == choice["message"]["generation_token_ids"]
    assert choice["message"]["generation_token_ids"][0] == 151657  # the <tool_call> special token


async def test_not_started_is_a_retryable_503() -> None:
    config = LocalModelConfig.model_validate({"name": "policy_model", "entrypoint": "app.py"})
    async with client_of(LocalModel(config, ServerClient({}))) as client:
        answer = await client.post("/v1/responses", json={"input": "q"})
    assert answer.status_code == 503 and answer.json()["retryable"] is True


@pytest.mark.parametrize("affinity", [64, 0])
async def test_requests_sharing_a_long_prefix_wait_for_the_slot_that_holds_it(affinity: int) -> None:
    fake = FakeLlama(delay_s=0.05)
    model = make_model(fake, parallel=2, prefix_affinity_tokens=affinity)
    system = {"role": "system", "content": "A long shared system prompt. " * 20}
    await ask(model, input=[system, {"role": "user", "content": "first"}])
    warm_slot = fake.bodies("/completion")[0]["id_slot"]
    fake.max_in_flight = 0
    async with client_of(model) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/responses", json={"input": [system, {"role": "user", "content": f"q{i}"}]}) for i in range(3))
        )
    assert [a.status_code for a in answers] == [200] * 3
    slots = [b["id_slot"] for b in fake.bodies("/completion")[1:]]
    if affinity:  # all reuse the warm slot, one after the other, instead of re-reading the prefix elsewhere
        assert slots == [warm_slot] * 3 and fake.max_in_flight == 1
    else:
        assert set(slots) == {0, 1} and fake.max_in_flight == 2


def test_common_prefix_len_matches_a_plain_scan() -> None:
    import random

    from responses_api_models.local_model.app import common_prefix_len

    rng = random.Random(7)
    for _ in range(500):
        a = [rng.randint(0, 2) for _ in range(rng.randint(0, 40))]
        b = a[: rng.randint(0, len(a))] + [rng.randint(0, 2) for _ in range(rng.randint(0, 5))]
        expected = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        assert common_prefix_len(a, b) == expected


async def test_a_stop_string_ends_the_call_before_it_with_ids_and_logprobs_that_match() -> None:
    # llama-server, stopping on a stop string, returns its token ids but drops it from the content and
    # from the logprobs; the call must end where the content ends (it was a model_error before)
    fake = FakeLlama()
    fake.replies.append("The answer is 42.\nQ: next question")
    async with client_of(make_model(fake)) as client:
        answer = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "6*7?"}], "stop": ["\nQ:"], "logprobs": True},
        )
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["message"]["content"] == "The answer is 42."
    ids = choice["message"]["generation_token_ids"]
    assert ids == tokenize("The answer is 42.") and [e["id"] for e in choice["logprobs"]["content"]] == ids
    assert len(choice["message"]["generation_log_probs"]) == len(ids)
