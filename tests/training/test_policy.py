"""The policy endpoint's token-in/token-out, with a character-level ChatML tokenizer (no torch):
a later call's prompt is the earlier prompt + generated ids unchanged, plus only the new messages."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ngym.training.policy import ChatRenderer, PolicyEndpoint
from ngym.training.view import episode_view
from ngym.wire.responses import FunctionCall, FunctionCallOutput, Message, ResponseCreateParams

EOS = 1  # "<|im_end|>"
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


class CharTokenizer:
    """ChatML rendering; one id per character (offset 10), <|im_end|> = 1, <|im_start|> = 2."""

    eos_token_id = EOS
    specials = {"<|im_end|>": 1, "<|im_start|>": 2}

    def apply_chat_template(self, conversation: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = False) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            for special, sid in self.specials.items():
                if text.startswith(special, i):
                    ids.append(sid)
                    i += len(special)
                    break
            else:
                ids.append(ord(text[i]) + 10)
                i += 1
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        names = {v: k for k, v in self.specials.items()}
        return "".join(("" if skip_special_tokens else names[i]) if i in names else chr(i - 10) for i in ids)


class Script:
    """Generates the given texts in turn (each followed by EOS), recording every prompt."""

    def __init__(self, tokenizer: CharTokenizer, texts: list[str]) -> None:
        self.tokenizer, self.texts, self.prompts = tokenizer, list(texts), []

    def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None) -> tuple[list[int], list[float]]:
        self.prompts.append(list(prompt_ids))
        ids = self.tokenizer.encode(self.texts.pop(0))[:max_new_tokens - 1] + [EOS]
        return ids, [-0.5] * len(ids)


def request(*items: Any) -> ResponseCreateParams:
    return ResponseCreateParams.model_validate({"input": [{"role": "user", "content": "weather in SF?"}, *items], "tools": TOOLS})


def test_first_prompt_renders_tools_and_later_prompts_extend_the_generated_ids() -> None:
    tok = CharTokenizer()
    call_text = '<tool_call>{"name":"get_weather","arguments":{"city":"SF"}}</tool_call>'
    gen = Script(tok, [call_text, "Cold."])
    endpoint = PolicyEndpoint(tok, gen, max_output_tokens=200)
    first = endpoint.respond(request())
    assert "get_weather" in tok.decode(gen.prompts[0]) and "<tool_call>" in tok.decode(gen.prompts[0])  # tools described
    (call,) = first.output
    assert isinstance(call, FunctionCall) and call.name == "get_weather" and json.loads(call.arguments) == {"city": "SF"}
    assert call.generation_token_ids == tok.encode(call_text) + [EOS] and call.prompt_token_ids == gen.prompts[0]

    # the agent sends the episode back with the tool's output; the call is re-serialised differently
    # (spaces in the JSON) - the endpoint must not re-render it
    echoed = FunctionCall.model_validate({**call.model_dump(), "arguments": '{"city": "SF"}'})
    second = endpoint.respond(request(echoed, FunctionCallOutput(call_id=call.call_id, output='{"weather": "cold"}')))
    prompt2 = gen.prompts[1]
    assert prompt2[: len(gen.prompts[0]) + len(call.generation_token_ids)] == gen.prompts[0] + call.generation_token_ids
    glue = tok.decode(prompt2[len(gen.prompts[0]) + len(call.generation_token_ids) :])
    assert glue == '\n<|im_start|>user\n<tool_response>{"weather": "cold"}</tool_response><|im_end|>\n<|im_start|>assistant\n'
    (message,) = second.output
    assert isinstance(message, Message) and message.text() == "Cold." and message.prompt_token_ids == prompt2

    view = episode_view({"response": {"output": [call.model_dump(), {"type": "function_call_output", "call_id": "x", "output": "o"}, message.model_dump()]}, "reward": 1.0})
    assert view.ok and view.tokens == prompt2 + message.generation_token_ids  # what the model saw + produced
    assert endpoint.generated_for(gen.prompts[0]) == [call.generation_token_ids]


def test_parse_keeps_text_and_calls_and_ignores_broken_calls() -> None:
    r = ChatRenderer(CharTokenizer())
    items = r.parse('Let me check. <tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>')
    assert [type(i).__name__ for i in items] == ["Message", "FunctionCall"]
    assert items[0].text() == "Let me check." and items[1].arguments == '{"x": 1}'
    (only,) = r.parse("<tool_call>{not json</tool_call>")
    assert isinstance(only, Message) and "not json" in only.text()


def test_a_response_cut_by_the_token_limit_is_incomplete() -> None:
    tok = CharTokenizer()
    endpoint = PolicyEndpoint(tok, Script(tok, ["a long answer"]), max_output_tokens=3)

    class NoStop(Script):
        def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None) -> tuple[list[int], list[float]]:
            return [50] * max_new_tokens, [-1.0] * max_new_tokens

    endpoint.generator = NoStop(tok, [])
    response = endpoint.respond(request())
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[-1].generation_token_ids == [50, 50, 50]


def test_served_over_http_and_bad_requests_are_400() -> None:
    tok = CharTokenizer()
    with PolicyEndpoint(tok, Script(tok, ["Hi."]), model_name="p") as endpoint:
        answer = httpx.post(endpoint.base_url + "/responses", json={"input": "hello"}, timeout=10)
        assert answer.status_code == 200
        body = answer.json()
        assert body["output"][-1]["generation_token_ids"][-1] == EOS and body["model"] == "p"
        bad = {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "generation_token_ids": [5]}]}
        answer = httpx.post(endpoint.base_url + "/responses", json=bad, timeout=10)
        assert answer.status_code == 400 and "prompt_token_ids" in answer.json()["error"]["message"]
        assert httpx.get(endpoint.base_url + "/models", timeout=10).json()["data"][0]["id"] == "p"


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_messages_and_instructions_merge_with_the_tools_text(role: str) -> None:
    r = ChatRenderer(CharTokenizer())
    body = ResponseCreateParams.model_validate({"instructions": "Be brief.", "input": [{"role": role, "content": "You help."}, {"role": "user", "content": "q"}], "tools": TOOLS})
    messages = r.messages(body)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\nYou help.\n\nYou can call these tools:")
