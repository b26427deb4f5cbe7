"""Tool-call grammars: what they admit and what they refuse.

The GBNF text is translated into a Python regular expression here (rules inlined, recursion cut
at a fixed depth, a token ``!<t>`` read as "not the text t"), so every test checks sentences
against the grammar's meaning, not its spelling. The real sampler is exercised by
tests/llama/test_real_server.py (slow)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ngym.models.llama.grammar import BARE_JSON, schema_rule, tool_call_grammar

_TOKEN = re.compile(
    r'\s*(?:(?P<lit>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<tok>!<[^>]+>)|(?P<rep>\{\d+(?:,\d*)?\})'
    r"|(?P<op>[()|*+?])|(?P<name>[a-zA-Z0-9-]+))"
)
_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "]": "]", "[": "[", "-": "-", "^": "^", "/": "/"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_ESC[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _class(text: str) -> str:
    inner = text[1:-1]
    negate = inner.startswith("^")
    if negate:
        inner = inner[1:]
    parts, i = [], 0
    while i < len(inner):
        if inner[i] == "\\":
            if inner[i + 1] == "x":
                parts.append(re.escape(chr(int(inner[i + 2 : i + 4], 16))))
                i += 4
            else:
                parts.append(re.escape(_ESC[inner[i + 1]]))
                i += 2
        elif inner[i] == "-" and parts and i + 1 < len(inner):
            parts.append("-")
            i += 1
        else:
            parts.append(re.escape(inner[i]))
            i += 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def to_regex(grammar: str, max_nesting: int = 3) -> re.Pattern[str]:
    rules: dict[str, list[tuple[str, str]]] = {}
    for line in grammar.strip().splitlines():
        name, body = line.split(" ::= ", 1)
        tokens = []
        pos = 0
        while pos < len(body):
            m = _TOKEN.match(body, pos)
            assert m and m.end() > pos, f"cannot read GBNF at {body[pos:]!r}"
            kind = m.lastgroup
            assert kind is not None
            tokens.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(body) and body[pos] == " ":
                pos += 1
        rules[name] = tokens

    def expand(name: str, stack: tuple[str, ...]) -> str:
        if stack.count(name) >= max_nesting:  # recursive rules (JSON values) nest this deep at most
            return "(?!)"
        stack = (*stack, name)
        out = []
        for kind, text in rules[name]:
            if kind == "lit":
                out.append(re.escape(_unescape(text[1:-1])))
            elif kind == "cls":
                out.append(_class(text))
            elif kind == "tok":
                out.append(f"(?!{re.escape(text[1:])})[\\s\\S]")
            elif kind == "name":
                out.append("(?:" + expand(text, stack) + ")")
            elif kind == "op" and text in "()":
                out.append("(?:" if text == "(" else ")")
            else:
                out.append(text)
        return "".join(out)

    return re.compile(expand("root", ()), re.DOTALL)


def admits(grammar: str, text: str) -> bool:
    return to_regex(grammar).fullmatch(text) is not None


SYN = {
    "type": "function",
    "name": "get_synonym_value",
    "parameters": {"type": "object", "properties": {"synonym": {"type": "string"}}, "required": ["synonym"], "additionalProperties": False},
}
EXTRACT = {
    "type": "function",
    "name": "extract_synonym_values",
    "parameters": {
        "type": "object",
        "properties": {"synonym_values": {"type": "array", "items": {"type": "integer"}}},
        "required": ["synonym_values"],
        "additionalProperties": False,
    },
}
TOOLS = [SYN, EXTRACT]


def call(name: str, arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def test_a_call_of_an_offered_tool_with_schema_arguments_is_admitted() -> None:
    grammar = tool_call_grammar(TOOLS)
    assert admits(grammar, call("get_synonym_value", {"synonym": "Blazing"}))
    assert admits(grammar, call("extract_synonym_values", {"synonym_values": [711, 407]}))
    assert admits(grammar, call("extract_synonym_values", {"synonym_values": []}))
    assert admits(grammar, call("get_synonym_value", {"synonym": 'a "quoted" \\ word\n'}))


@pytest.mark.parametrize(
    "text",
    [
        call("get_weather", {"city": "SF"}),  # not offered
        call("get_synonym_value", {"word": "Blazing"}),  # wrong key
        call("get_synonym_value", {}),  # required key missing
        call("get_synonym_value", {"synonym": "Blazing", "extra": 1}),  # additionalProperties false
        call("get_synonym_value", {"synonym": 5}),  # wrong type
        call("extract_synonym_values", {"synonym_values": ["711"]}),  # strings for integers
        call("extract_synonym_values", {"synonym_values": [7.5]}),
        call("extract_synonym_values", {"synonym_values": [711, 407]})[:-3],  # unclosed
    ],
)
def test_calls_outside_the_schemas_are_refused(text: str) -> None:
    assert not admits(tool_call_grammar(TOOLS), text)


def test_a_message_is_admitted_unless_a_call_is_required() -> None:
    text = "The values are 711 and 407."
    assert admits(tool_call_grammar(TOOLS), text)
    assert not admits(tool_call_grammar(TOOLS, required=True), text)
    assert admits(tool_call_grammar(TOOLS, required=True), call("get_synonym_value", {"synonym": "Warm"}))
    # a message cannot open with the call tag (or a bare object, or white space before one) and then leave the grammar
    for text in ("<tool_call>\nget_synonym_value(Blazing)", '{"name": "get_weather"}', "\n<tool_call>", '```json\n{"name": "x"}\n```'):
        assert not admits(tool_call_grammar(TOOLS), text)
    # the empty message is not a turn
    assert not admits(tool_call_grammar(TOOLS), "")


def test_parallel_calls_only_when_allowed() -> None:
    two = call("get_synonym_value", {"synonym": "Blazing"}) + "\n" + call("get_synonym_value", {"synonym": "Warm"})
    assert admits(tool_call_grammar(TOOLS, parallel=True), two)
    assert not admits(tool_call_grammar(TOOLS, parallel=False), two)
    assert admits(tool_call_grammar(TOOLS, parallel=False), call("get_synonym_value", {"synonym": "Warm"}))


def test_bare_json_syntax() -> None:
    grammar = tool_call_grammar(TOOLS, syntax=BARE_JSON)
    assert admits(grammar, json.dumps({"name": "get_synonym_value", "arguments": {"synonym": "Warm"}}))
    assert admits(grammar, "Done.")
    assert not admits(grammar, call("get_synonym_value", {"synonym": "Warm"}) + "x")


def test_tool_choice_shapes_and_errors() -> None:
    chat_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    grammar = tool_call_grammar([chat_tool], required=True)
    assert admits(grammar, call("f", {})) and admits(grammar, call("f", {"any": [1, {"x": None}]}))
    with pytest.raises(ValueError):
        tool_call_grammar([])


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer"}, [0, -12, 711], [1.5, "1", True]),
        ({"type": "number"}, [0, -1.25, 3e-05, 10], ["x", None]),
        ({"type": "boolean"}, [True, False], [0, "true"]),
        ({"type": "null"}, [None], [0]),
        ({"enum": ["a", "b c", 3]}, ["a", "b c", 3], ["c", 4]),
        ({"const": {"k": [1]}}, [{"k": [1]}], [{"k": [2]}]),
        ({"type": ["string", "null"]}, ["x", None], [1]),
        ({"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]}, [1, ["a"]], [[1], "a"]),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3}, [[1, 2], [1, 2, 3]], [[1], [1, 2, 3, 4]]),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 1}, [[1], [1, 2, 3, 4, 5]], [[]]),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["b"]},
            [{"b": "x"}, {"b": "x", "a": 1}],
            [{"a": 1}, {}],
        ),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}}},
            [{}, {"a": 1}, {"b": "x"}, {"c": True}, {"a": 1, "c": False}, {"a": 1, "b": "y", "c": True}],
            [{"d": 1}, {"a": "1"}],
        ),
        (
            {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}, "required": ["p"], "$defs": {"P": {"type": "integer"}}},
            [{"p": 3}],
            [{"p": "3"}],
        ),
        ({"type": "object", "properties": {}, "additionalProperties": False}, [{}], [{"a": 1}]),
        ({}, [1, "x", [1, {"a": None}], {"b": [True]}], []),
    ],
)
def test_schema_rules(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    grammar = schema_rule(schema)
    for value in good:
        assert admits(grammar, json.dumps(value)), (schema, value, grammar)
    for value in bad:
        assert not admits(grammar, json.dumps(value)), (schema, value, grammar)


def test_names_and_keys_that_need_escaping() -> None:
    tool = {
        "type": "function",
        "name": "say",
        "parameters": {"type": "object", "properties": {'q"uote\\d': {"type": "string"}, "ünï": {"enum": ["é\n"]}}, "required": ['q"uote\\d', "ünï"]},
    }
    grammar = tool_call_grammar([tool])
    text = "<tool_call>\n" + json.dumps({"name": "say", "arguments": {'q"uote\\d': "x", "ünï": "é\n"}}, ensure_ascii=False) + "\n</tool_call>"
    assert admits(grammar, text)
