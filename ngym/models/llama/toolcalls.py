"""Extract tool calls from free-form model text.

Small instruction-tuned models emit tool calls in a few shapes.  :func:`parse_tool_calls`
recognises three of them, anywhere in the text and in any mix:

1. Hermes/Qwen tags: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one or more;
   a final tag that the model never closed is accepted if its body is a complete call);
2. a fenced code block (```` ```json ````, ```` ```tool_call ```` or a bare ```` ``` ````) whose
   whole body is one call object or a JSON list of call objects;
3. a bare JSON object ``{"name": ..., "arguments": ...}`` embedded in prose.

A call object is ``{"name": str, "arguments": object | JSON-string}``; ``"parameters"`` is
accepted for ``"arguments"``, and the OpenAI shape ``{"type": "function", "function": {...}}``
is unwrapped.  Only names in the offered tool list are accepted; anything that does not parse or
names an unknown tool is left in the text unchanged.  The functions are pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["ToolCall", "parse_tool_calls", "tool_names_from_tools"]


class ToolCall(NamedTuple):
    name: str
    #: compact JSON text of the arguments object
    arguments: str


_TAG_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n?(.*?)```", re.DOTALL)
_CALL_FENCE_LANGS = frozenset({"", "json", "tool_call", "tool_code", "tool_calls"})
_DECODER = json.JSONDecoder()
# A bare-object scan starting at every "{" is quadratic in the worst case; model outputs are
# bounded, but cap the number of attempts anyway.
_MAX_BARE_ATTEMPTS = 2000


def tool_names_from_tools(tools: Iterable[Any]) -> set[str]:
    """Names from OpenAI chat tools ``{"type":"function","function":{"name":..}}``, Responses
    tools ``{"type":"function","name":..}`` or plain strings."""
    names: set[str] = set()
    for tool in tools:
        if isinstance(tool, str):
            names.add(tool)
        elif isinstance(tool, dict):
            fn = tool.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
            elif isinstance(tool.get("name"), str):
                names.add(tool["name"])
    return names


def _as_call(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "function" and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    if "arguments" in obj:
        args = obj["arguments"]
    elif "parameters" in obj:
        args = obj["parameters"]
    else:
        return None
    if isinstance(args, str):
        stripped = args.strip()
        if not stripped:
            args = {}
        else:
            try:
                args = json.loads(stripped)
            except ValueError:
                return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name, json.dumps(args, ensure_ascii=False))


def _decode_all(body: str) -> list[Any] | None:
    """Decode ``body`` as a sequence of whitespace-separated JSON values (None on failure)."""
    values: list[Any] = []
    pos = 0
    n = len(body)
    while True:
        while pos < n and body[pos].isspace():
            pos += 1
        if pos >= n:
            break
        try:
            value, pos = _DECODER.raw_decode(body, pos)
        except ValueError:
            return None
        values.append(value)
    return values


def _calls_from_body(body: str, names: set[str]) -> list[ToolCall] | None:
    """All calls in a tag/fence body, or None unless *every* value in it is a valid call."""
    values = _decode_all(body)
    if not values:
        return None
    flat: list[Any] = []
    for value in values:
        if isinstance(value, list):
            flat.extend(value)
        else:
            flat.append(value)
    if not flat:
        return None
    calls: list[ToolCall] = []
    for value in flat:
        call = _as_call(value, names)
        if call is None:
            return None
        calls.append(call)
    return calls


def parse_tool_calls(text: str, tool_names: Iterable[str]) -> tuple[str, list[ToolCall]]:
    """Split ``text`` into (remaining_text, calls).

    ``calls`` is in text order; each is a ``ToolCall(name, arguments_json)``.  The recognised
    call spans are removed from the text and the remainder is stripped of surrounding
    whitespace; when nothing is recognised the text is returned unchanged.
    """
    names = set(tool_names)
    if not names or not text:
        return text, []
    spans: list[tuple[int, int, list[ToolCall]]] = []

    # Regions the bare-object scan must not look into: every tag and fenced block, whether or
    # not it turned out to be a call (a rejected block stays verbatim, as a whole).
    blocked: list[tuple[int, int]] = []

    for m in _TAG_RE.finditer(text):
        blocked.append((m.start(), m.end()))
        calls = _calls_from_body(m.group(1), names)
        if calls:
            spans.append((m.start(), m.end(), calls))

    for m in _FENCE_RE.finditer(text):
        if any(m.start() < e and s < m.end() for s, e in blocked):
            continue
        blocked.append((m.start(), m.end()))
        if m.group(1).lower() not in _CALL_FENCE_LANGS:
            continue
        calls = _calls_from_body(m.group(2), names)
        if calls:
            spans.append((m.start(), m.end(), calls))

    pos = 0
    attempts = 0
    while attempts < _MAX_BARE_ATTEMPTS:
        start = text.find("{", pos)
        if start < 0:
            break
        inside = next((e for s, e in blocked if s <= start < e), None)
        if inside is not None:
            pos = inside
            continue
        attempts += 1
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        call = _as_call(value, names)
        if call is not None and not any(start < e and s < end for s, e in blocked):
            spans.append((start, end, [call]))
        # A complete JSON object that is not a call is ordinary data: skip it whole rather than
        # fishing for call-shaped objects nested inside it.
        pos = end

    if not spans:
        return text, []
    spans.sort(key=lambda s: s[0])
    pieces: list[str] = []
    calls_out: list[ToolCall] = []
    cursor = 0
    for start, end, calls in spans:
        pieces.append(text[cursor:start])
        calls_out.extend(calls)
        cursor = end
    pieces.append(text[cursor:])
    remaining = "".join(pieces)
    remaining = re.sub(r"\n{3,}", "\n\n", remaining).strip()
    return remaining, calls_out
