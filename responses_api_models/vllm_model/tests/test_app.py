"""vllm_model in-process against fake OpenAI-compatible backends (vLLM and llama.cpp flavours)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ngym.devkit.testing.fake_llama import FakeLlama, render, tokenize
from responses_api_models.vllm_model.app import VLLMModel, VLLMModelConfig

pytestmark = pytest.mark.anyio

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def make_server(fakes: list[FakeLlama], **settings: Any) -> VLLMModel:
    config = VLLMModelConfig.model_validate(
        {
            "name": "policy_model",
            "entrypoint": "app.py",
            "base_url": [f"http://backend{i}/v1" for i in range(len(fakes))],
            "model": "m",
            "return_token_id_information": False,
            "uses_reasoning_parser": True,
            **settings,
        }
    )
    from ngym.server.client import ServerClient

    server = VLLMModel(config, ServerClient({}))
    server.backends = [
        server.make_backend(url, httpx.ASGITransport(app=fake.app)) for url, fake in zip(config.base_url, fakes, strict=True)
    ]
    return server


def client_of(server: VLLMModel) -> httpx.AsyncClient:
    """One client = one episode: it keeps the model server's session cookie."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=server.build_app()), base_url="http://policy_model")


async def test_episodes_are_pinned_to_one_backend_round_robin() -> None:
    fakes = [FakeLlama(), FakeLlama()]
    server = make_server(fakes)
    clients = [client_of(server) for _ in range(3)]
    order = [0, 1, 2, 0, 2, 1, 1]
    for index in order:
        answer = await clients[index].post("/v1/responses", json={"input": f"client {index}"})
        assert answer.status_code == 200, answer.text
    sent = [[b["messages"][0]["content"][0]["text"] for b in fake.bodies("/v1/chat/completions")] for fake in fakes]
    # first sight: 0 -> backend 0, 1 -> backend 1, 2 -> backend 0; later calls stay where they started
    assert sent[0] == ["client 0", "client 2", "client 0", "client 2"]
    assert sent[1] == ["client 1", "client 1", "client 1"]
    assert len(server._pins) == 3


async def test_base_url_may_be_one_string() -> None:
    config = VLLMModelConfig.model_validate(
        {"entrypoint": "app.py", "base_url": "http://x/v1", "model": "m", "return_token_id_information": True, "uses_reasoning_parser": False}
    )
    assert config.base_url == ["http://x/v1"]
    with pytest.raises(ValueError, match="is_responses_native"):
        VLLMModelConfig.model_validate(
            {"entrypoint": "app.py", "base_url": "http://x/v1", "model": "m", "return_token_id_information": True,
             "uses_reasoning_parser": False, "is_responses_native": True}
        )


@pytest.mark.parametrize("flavor", ["vllm", "llama_cpp"])
async def test_token_ids_on_the_last_item_and_prompt_ids_from_the_backend_tokenizer(flavor: str) -> None:
    fake = FakeLlama(flavor)  # type: ignore[arg-type]
    fake.replies.append({"content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "SF"}'}}]})
    server = make_server([fake], return_token_id_information=True)
    async with client_of(server) as client:
        answer = await client.post("/v1/responses", json={"input": [{"role": "user", "content": "weather in SF?"}], "tools": [WEATHER]})
    assert answer.status_code == 200, answer.text
    output = answer.json()["output"]
    assert [i["type"] for i in output] == ["message", "function_call"]
    assert "prompt_token_ids" not in output[0]
    call = output[-1]
    sent = fake.bodies("/v1/chat/completions")[0]
    assert sent["logprobs"] is True and sent["return_tokens_as_token_ids"] is True and sent["model"] == "m"
    assert call["prompt_token_ids"] == tokenize(render(sent["messages"], sent["tools"]))
    assert call["generation_token_ids"] == tokenize("Let me look.") + [151645]
    assert len(call["generation_log_probs"]) == len(call["generation_token_ids"])
    # vLLM tokenizes chat messages itself; llama.cpp needs /apply-template first
    assert bool(fake.bodies("/apply-template")) == (flavor == "llama_cpp")
    assert answer.json()["token_faithfulness"] == {"ok": True, "calls": 1, "violations": []}


async def test_re_templated_history_is_flagged_as_unfaithful() -> None:
    """The model generated the call as text; the template re-renders it as <tool_call> tags: the
    next prompt does not extend prompt + generation, and the response says so."""
    fake = FakeLlama("llama_cpp")
    fake.replies += [{"content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "SF"}'}}]}, "It is cold."]
    server = make_server([fake], return_token_id_information=True)
    async with client_of(server) as client:
        first = (await client.post("/v1/responses", json={"input": "weather?", "tools": [WEATHER]})).json()
        history = [{"role": "user", "content": "weather?"}, *first["output"], {"type": "function_call_output", "call_id": "c1", "output": "cold"}]
        second = (await client.post("/v1/responses", json={"input": history, "tools": [WEATHER]})).json()
    verdict = second["token_faithfulness"]
    assert verdict["ok"] is False and verdict["calls"] == 2 and verdict["violations"][0]["call"] == 1


async def test_context_overflow_ends_the_episode_with_an_empty_answer() -> None:
    for flavor in ("vllm", "llama_cpp"):
        fake = FakeLlama(flavor)
        fake.overflow = True
        async with client_of(make_server([fake])) as client:
            answer = await client.post("/v1/responses", json={"input": "a very long prompt"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [i["type"] for i in body["output"]] == ["message"] and body["output"][0]["content"][0]["text"] == ""
        assert body.get("incomplete_details") is None


async def test_other_backend_errors_name_the_url() -> None:
    app = httpx.MockTransport(lambda request: httpx.Response(500, text="boom"))
    server = make_server([FakeLlama()])
    server.backends = [server.make_backend("http://dead/v1", app)]
    async with client_of(server) as client:
        answer = await client.post("/v1/responses", json={"input": "x"})
    assert answer.status_code == 502 and "http://dead/v1/chat/completions answered HTTP 500: boom" in answer.json()["error"]


async def test_reasoning_parser_fields_round_trip_through_think_tags() -> None:
    fake = FakeLlama("vllm")
    fake.replies.append({"content": "Hello!", "reasoning_content": "greet them"})
    async with client_of(make_server([fake])) as client:
        history = [
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "earlier thought"}]},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": "again"},
        ]
        body = (await client.post("/v1/responses", json={"input": history})).json()
    assert [i["type"] for i in body["output"]] == ["reasoning", "message"]
    assert body["output"][0]["summary"][0]["text"] == "greet them" and body["output"][1]["content"][0]["text"] == "Hello!"
    sent = fake.bodies("/v1/chat/completions")[0]["messages"][1]
    assert sent["content"] == "earlier answer" and sent["reasoning_content"] == "earlier thought"


async def test_metadata_overrides_and_developer_role() -> None:
    fake = FakeLlama("vllm")
    server = make_server([fake], replace_developer_role_with_system=True, chat_template_kwargs={"enable_thinking": False}, extra_body={"top_k": 5})
    async with client_of(server) as client:
        await client.post(
            "/v1/responses",
            json={"input": [{"role": "developer", "content": "be nice"}, {"role": "user", "content": "hi"}],
                  "metadata": {"chat_template_kwargs": '{"enable_thinking": true}', "extra_body": '{"top_k": 7}'}},
        )
    sent = fake.bodies("/v1/chat/completions")[0]
    assert sent["messages"][0]["role"] == "system" and sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert sent["top_k"] == 7 and "metadata" not in sent


async def test_chat_completions_route_returns_token_fields_on_the_message() -> None:
    fake = FakeLlama("vllm")
    fake.replies.append("ok")
    async with client_of(make_server([fake], return_token_id_information=True)) as client:
        body = (await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "ok" and message["generation_token_ids"] == tokenize("ok") + [151645]
    assert message["prompt_token_ids"][0] == 151644 and body["choices"][0].get("logprobs") is None
