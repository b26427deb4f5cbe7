"""Responses <-> Chat Completions conversion (ngym.models.convert), including the reference's own vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.models.convert import (
    ConversionError,
    chat_message_to_items,
    context_overflow,
    extract_think,
    merge_reasoning_into_content,
    response_from_chat,
    responses_to_chat,
    split_think_for_backend,
    tokens_from_logprobs,
)
from ngym.devkit.testing.fake_llama import OVERFLOW_LLAMA, OVERFLOW_VLLM
from ngym.wire.chat import ChatMessage, ChatUsage, ToolCall, ToolCallFunction
from ngym.wire.responses import FunctionCall, Message, Reasoning, ResponseCreateParams, TokenInfo

REFERENCE = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "compat" / "reference-v0.2.1" / "vllm_model" / "round_trip_test_data.json"
)


def chat_of(input_: Any, **params: Any) -> dict[str, Any]:
    token_info = params.pop("_t", False)
    converted = responses_to_chat(ResponseCreateParams.model_validate({"input": input_, **params}), token_info=token_info)
    return converted.model_dump(mode="json", exclude_unset=True)


@pytest.mark.parametrize("token_info", [False, True])
def test_reference_round_trip_vectors(token_info: bool) -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"reference vectors not found at {REFERENCE}")
    data = json.loads(REFERENCE.read_text())
    params = ResponseCreateParams.model_validate(
        {"input": [{"role": "system", "content": "system"}, {"role": "user", "content": "hello!"}, *data["input"]["output"]]}
    )
    got = responses_to_chat(params, token_info=token_info).model_dump(mode="json", exclude_unset=True)
    expected = data["expected_output_return_token_id_information" if token_info else "expected_output"]
    assert got["messages"] == expected["messages"]
    assert {k: v for k, v in got.items() if k != "messages"} == {k: v for k, v in expected.items() if v is not None and k != "messages"}
    if token_info:
        assert [m.get("prompt_token_ids") is not None for m in got["messages"]] == [False, False, True, False, False, False, True]


def test_string_input_is_one_user_message_with_a_text_part() -> None:
    assert chat_of("hello")["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


def test_roles_and_content_forms() -> None:
    messages = chat_of(
        [
            {"role": "user", "content": "my content"},
            {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "input_text", "text": "assistant content"}], "type": "message"},
            {"role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
        ]
    )["messages"]
    assert messages == [
        {"role": "user", "content": "my content"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "assistant content", "tool_calls": []},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
    ]


def test_consecutive_generated_items_merge_and_tool_outputs_split_them() -> None:
    messages = chat_of(
        [
            {"role": "user", "content": "check my order"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Checking"}]},
            {"id": "m1", "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Sure.", "annotations": []}]},
            {"type": "function_call", "call_id": "c1", "name": "status", "arguments": '{"id": 1}'},
            {"type": "function_call_output", "call_id": "c1", "output": '{"s": "shipped"}'},
            {"type": "function_call", "call_id": "c2", "name": "date", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "tomorrow"},
            {"role": "assistant", "content": "It ships tomorrow."},
        ]
    )["messages"]
    assert messages == [
        {"role": "user", "content": "check my order"},
        {
            "role": "assistant",
            "content": "<think>Checking</think>Sure.",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "status", "arguments": '{"id": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"s": "shipped"}'},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "date", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "tomorrow"},
        {"role": "assistant", "content": "It ships tomorrow.", "tool_calls": []},
    ]


def test_params_tools_and_tool_choice() -> None:
    got = chat_of(
        "hi",
        instructions="Be brief.",
        max_output_tokens=7,
        temperature=0.2,
        tool_choice={"type": "function", "name": "get_weather"},
        tools=[{"type": "function", "name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": True}],
    )
    assert got["messages"][0] == {"role": "system", "content": "Be brief."}
    assert got["max_tokens"] == 7 and got["temperature"] == 0.2
    assert got["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": True}}]
    assert got["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_unsupported_content_part_is_a_clear_error() -> None:
    params = ResponseCreateParams.model_validate({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]})
    with pytest.raises(ConversionError, match="input_image"):
        responses_to_chat(params)


def test_per_call_token_mode_puts_fields_only_on_their_own_call() -> None:
    items = [
        {"role": "user", "content": "q"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "prompt_token_ids": [1], "generation_token_ids": [2], "generation_log_probs": [-0.5]},
        {"type": "function_call_output", "call_id": "c1", "output": "x"},
        {"role": "assistant", "content": "injected, not generated"},
        {"role": "user", "content": "again"},
    ]
    reference = chat_of(items, _t=True)["messages"]
    per_call = responses_to_chat(ResponseCreateParams.model_validate({"input": items}), token_info="per_call").messages
    # the reference reuses the last token fields on later assistant messages; per_call does not
    assert reference[3]["prompt_token_ids"] == [1]
    assert per_call[1].prompt_token_ids == [1] and per_call[3].prompt_token_ids is None


# ---- chat -> Responses ---------------------------------------------------------------------------


def test_think_spans_become_one_reasoning_item_first() -> None:
    assert extract_think("A.<think>t1</think>B.<think>t2</think>C.") == (["t1", "t2"], "A.B.C.")
    items = chat_message_to_items(ChatMessage(role="assistant", content="<think>a</think><think>b</think>Hello!"))
    assert isinstance(items[0], Reasoning) and [s.text for s in items[0].summary] == ["a", "b"]
    assert isinstance(items[1], Message) and items[1].text() == "Hello!" and (items[1].id or "").startswith("msg_")


def test_tool_calls_become_function_calls_and_token_fields_go_on_the_last_item() -> None:
    message = ChatMessage(
        role="assistant",
        content="<think>I'm thinking</think>I'm chatting!",
        tool_calls=[
            ToolCall(id="tc1", function=ToolCallFunction(name="get_weather", arguments='{"city_name": "new york"}')),
            ToolCall(id="tc2", function=ToolCallFunction(name="get_weather", arguments='{"city_name": "boston"}')),
        ],
    )
    info = TokenInfo(prompt_token_ids=[1, 2, 3], generation_token_ids=[4, 5, 6], generation_log_probs=[-7.0, -8.0, -9.0])
    items = chat_message_to_items(message, info)
    assert [i.type for i in items] == ["reasoning", "message", "function_call", "function_call"]
    last = items[-1]
    assert isinstance(last, FunctionCall) and last.call_id == last.id == "tc2" and last.status == "completed"
    assert (last.prompt_token_ids, last.generation_token_ids, last.generation_log_probs) == ([1, 2, 3], [4, 5, 6], [-7.0, -8.0, -9.0])
    assert all(getattr(i, "prompt_token_ids", None) is None for i in items[:-1])
    # and back: the same assistant message, with the token fields
    again = responses_to_chat(
        ResponseCreateParams.model_validate({"input": [{"role": "user", "content": "hi"}, *[i.model_dump() for i in items]]}), token_info=True
    ).messages[1]
    assert again.content == "<think>I'm thinking</think>I'm chatting!" and again.prompt_token_ids == [1, 2, 3]


def test_empty_answer_is_an_empty_message() -> None:
    items = chat_message_to_items(ChatMessage(role="assistant", content=""))
    assert len(items) == 1 and isinstance(items[0], Message) and items[0].text() == ""


def test_response_envelope_marks_truncation() -> None:
    params = ResponseCreateParams.model_validate({"input": "hi", "max_output_tokens": 3})
    usage = ChatUsage(prompt_tokens=5, completion_tokens=3, total_tokens=8, prompt_tokens_details={"cached_tokens": 4})
    response = response_from_chat(params, [], model="m", finish_reason="length", usage=usage)
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 4
    assert response_from_chat(params, [], model="m", finish_reason="stop", usage=None).incomplete_details is None


def test_reasoning_both_ways_for_a_reasoning_parser_backend() -> None:
    sent = split_think_for_backend(ChatMessage(role="assistant", content="<think>plan</think>answer"))
    assert sent.content == "answer" and sent.reasoning_content == "plan" and sent.model_extra == {"reasoning": "plan"}
    back = merge_reasoning_into_content(ChatMessage.model_validate({"role": "assistant", "content": "answer", "reasoning": "plan"}))
    assert back.content == "<think>plan</think>answer" and back.reasoning_content is None and "reasoning" not in (back.model_extra or {})


def test_token_ids_from_both_logprob_formats() -> None:
    assert tokens_from_logprobs([{"token": "token_id:42", "logprob": -0.5}, {"token": "token_id:7", "logprob": 0.0}]) == ([42, 7], [-0.5, 0.0])
    assert tokens_from_logprobs([{"id": 9707, "token": "Hello", "logprob": -0.2}]) == ([9707], [-0.2])
    with pytest.raises(ConversionError, match="return_tokens_as_token_ids"):
        tokens_from_logprobs([{"token": "Hello", "logprob": -0.2}])


def test_context_overflow_messages_of_vllm_and_llama_cpp() -> None:
    assert context_overflow(400, json.dumps(OVERFLOW_VLLM))
    assert context_overflow(400, json.dumps(OVERFLOW_LLAMA))
    assert not context_overflow(500, json.dumps(OVERFLOW_LLAMA))
    assert not context_overflow(400, '{"error": "bad request: unknown field"}')
