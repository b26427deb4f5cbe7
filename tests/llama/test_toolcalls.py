from __future__ import annotations

import json

from ngym.models.llama.toolcalls import ToolCall, parse_tool_calls, tool_names_from_tools

TOOLS = {"get_weather", "search"}


def args(call: ToolCall) -> dict[str, object]:
    result: dict[str, object] = json.loads(call.arguments)
    return result


def test_single_tag() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == ""
    assert calls == [ToolCall("get_weather", '{"city": "Paris"}')]


def test_several_tags_keep_order_and_text() -> None:
    text = (
        "Let me check both.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "search", "arguments": {"q": "Paris hotels"}}\n</tool_call>'
    )
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == "Let me check both."
    assert [c.name for c in calls] == ["get_weather", "search"]
    assert args(calls[1]) == {"q": "Paris hotels"}


def test_unclosed_final_tag() -> None:
    text = '<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n'
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == ""
    assert calls == [ToolCall("search", '{"q": "x"}')]


def test_two_objects_in_one_tag() -> None:
    text = '<tool_call>{"name": "search", "arguments": {"q": "a"}}\n{"name": "search", "arguments": {"q": "b"}}</tool_call>'
    _, calls = parse_tool_calls(text, TOOLS)
    assert [args(c) for c in calls] == [{"q": "a"}, {"q": "b"}]


def test_json_fence() -> None:
    text = 'Sure:\n```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```\nDone.'
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == "Sure:\n\nDone."
    assert calls == [ToolCall("get_weather", '{"city": "Oslo"}')]


def test_fence_with_list_of_calls() -> None:
    text = '```json\n[{"name": "search", "arguments": {"q": "a"}}, {"name": "get_weather", "arguments": {"city": "b"}}]\n```'
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == ""
    assert [c.name for c in calls] == ["search", "get_weather"]


def test_fence_with_ordinary_json_is_left_alone() -> None:
    text = 'Example config:\n```json\n{"name": "my-project", "version": "1.0"}\n```'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_bare_object() -> None:
    text = 'I will call {"name": "search", "arguments": {"q": "llama"}} now.'
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == "I will call  now."
    assert calls == [ToolCall("search", '{"q": "llama"}')]


def test_bare_objects_several_and_mixed_with_tag() -> None:
    text = (
        '{"name": "search", "arguments": {"q": "1"}}\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "2"}}</tool_call>\n'
        '{"name": "search", "arguments": {"q": "3"}}'
    )
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == ""
    assert [json.loads(c.arguments) for c in calls] == [{"q": "1"}, {"city": "2"}, {"q": "3"}]


def test_arguments_as_json_string_and_parameters_alias_and_openai_shape() -> None:
    text = (
        '<tool_call>{"name": "search", "arguments": "{\\"q\\": \\"s\\"}"}</tool_call>'
        '<tool_call>{"name": "search", "parameters": {"q": "p"}}</tool_call>'
        '<tool_call>{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "o"}}}</tool_call>'
    )
    _, calls = parse_tool_calls(text, TOOLS)
    assert [(c.name, args(c)) for c in calls] == [
        ("search", {"q": "s"}),
        ("search", {"q": "p"}),
        ("get_weather", {"city": "o"}),
    ]


def test_non_ascii_arguments_preserved() -> None:
    _, calls = parse_tool_calls('<tool_call>{"name": "search", "arguments": {"q": "Zürich"}}</tool_call>', TOOLS)
    assert calls[0].arguments == '{"q": "Zürich"}'


def test_invalid_json_is_left_as_text() -> None:
    text = '<tool_call>\n{"name": "search", "arguments": {"q": "oops"}\n</tool_call>'
    assert parse_tool_calls(text, TOOLS) == (text, [])
    bare = 'call {"name": "search", "arguments": {q: 1}} please'
    assert parse_tool_calls(bare, TOOLS) == (bare, [])


def test_invalid_arguments_string_rejected() -> None:
    text = '<tool_call>{"name": "search", "arguments": "not json"}</tool_call>'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_unknown_tool_names_are_ignored() -> None:
    text = (
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "search", "arguments": {"q": "ok"}}</tool_call>'
    )
    rest, calls = parse_tool_calls(text, TOOLS)
    assert rest == '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert calls == [ToolCall("search", '{"q": "ok"}')]


def test_fence_with_one_unknown_call_is_left_whole() -> None:
    text = '```json\n[{"name": "search", "arguments": {}}, {"name": "nope", "arguments": {}}]\n```'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_no_tools_offered() -> None:
    text = '<tool_call>{"name": "search", "arguments": {}}</tool_call>'
    assert parse_tool_calls(text, []) == (text, [])


def test_braces_that_are_not_calls() -> None:
    samples = [
        "def f(x): return {x: 1}",
        "Use a set like {1, 2, 3} or a dict {'a': 1}.",
        'The JSON {"name": "search"} lacks arguments.',
        '{"result": {"name": "search", "arguments": {"q": "nested"}}}',
        "Unbalanced { brace and } another",
        "function() { if (a) { b(); } }",
        "",
    ]
    for text in samples:
        assert parse_tool_calls(text, TOOLS) == (text, []), text


def test_plain_text_unchanged_including_whitespace() -> None:
    text = "  Hello,\n\n\n world.  "
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_tool_names_from_tools() -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {}}},
        {"type": "function", "name": "b", "parameters": {}},
        "c",
        {"type": "web_search"},
    ]
    assert tool_names_from_tools(tools) == {"a", "b", "c"}


def test_code_fences_in_other_languages_are_not_scanned() -> None:
    text = 'Run this:\n```python\nprint({"name": "search", "arguments": {"q": "x"}})\n```'
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_inline_fence_without_newline() -> None:
    rest, calls = parse_tool_calls('```{"name": "search", "arguments": {"q": "i"}}```', TOOLS)
    assert rest == ""
    assert calls == [ToolCall("search", '{"q": "i"}')]
