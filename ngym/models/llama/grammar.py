"""GBNF grammars for tool calls, built from the offered tools' JSON schemas.

llama.cpp samples under a GBNF grammar (``/completion``'s ``grammar``): tokens that would leave the
grammar get probability 0, so a grammar-constrained generation is still the model's own choice
among the allowed continuations, and its token ids and log-probabilities stay exact
(token-in/token-out is unchanged). :func:`tool_call_grammar` writes a grammar whose sentences are
either

* one tool call (several when ``parallel``) in the chat template's own syntax, by default the
  Hermes/Qwen form ``<tool_call>\\n{"name": "<tool>", "arguments": {...}}\\n</tool_call>``, with the
  name one of the offered tools and the arguments an instance of that tool's parameter schema; or
* (unless ``required``) a plain message that does not start with a tool call.

So a model cannot write a call as prose, invent a tool name, or misspell an argument key.

:func:`schema_rule` translates the JSON-schema subset tools use: ``type`` (object, array, string,
integer, number, boolean, null, or a list of them), ``properties``/``required``/
``additionalProperties``, ``items``/``minItems``/``maxItems``, ``enum``, ``const``,
``anyOf``/``oneOf``, ``$ref`` to ``#/$defs/...`` or ``#/definitions/...``. Anything else (``allOf``,
``pattern``, ``format``) is left unconstrained beyond its JSON type: the grammar then admits more
than the schema, never less. Layout is json.dumps's (``", "`` and ``": "``), the form the models
were trained on, with keys in the schema's order (required keys first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GrammarBuilder", "HERMES", "BARE_JSON", "ToolCallSyntax", "schema_rule", "tool_call_grammar"]

#: the most array items / nesting a grammar spells out (bounded so grammars stay small)
_MAX_REPEAT = 64
_MAX_DEPTH = 16


class ToolCallSyntax:
    """How a model writes one call: ``prefix`` + ``{"name": ..., "arguments": ...}`` + ``suffix``,
    several calls joined by ``separator``."""

    def __init__(self, prefix: str, suffix: str, separator: str, arguments_key: str = "arguments") -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.separator = separator
        self.arguments_key = arguments_key


#: Hermes / Qwen2.5 / Qwen3 chat templates
HERMES = ToolCallSyntax("<tool_call>\n", "\n</tool_call>", "\n")
#: a bare JSON object (templates without a tool-call syntax of their own)
BARE_JSON = ToolCallSyntax("", "", "\n")

_PRIMITIVES = {
    "ws": "[ \\t\\n]*",
    "string": '"\\"" char* "\\""',
    "char": '[^"\\\\\\x00-\\x1f] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "integer": '"-"? ("0" | [1-9] [0-9]{0,17})',
    "number": '"-"? ("0" | [1-9] [0-9]{0,17}) ("." [0-9]{1,17})? ([eE] [-+]? [0-9]{1,3})?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws ( string ":" ws value ("," ws string ":" ws value)* )? ws "}"',
    "array": '"[" ws ( value ("," ws value)* )? ws "]"',
}


def _literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value: Any) -> str:
    return _literal(json.dumps(value, ensure_ascii=False))


class GrammarBuilder:
    """Collects named GBNF rules; :meth:`rule` returns the name of a rule for a JSON schema."""

    def __init__(self, root_schema: Mapping[str, Any] | None = None) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self.root_schema = root_schema or {}
        self._used_primitives: set[str] = set()

    def primitive(self, name: str) -> str:
        self._used_primitives.add(name)
        return name

    def add(self, hint: str, body: str) -> str:
        """A rule with this body (reused when an identical one exists), named after ``hint``."""
        if body in self._by_body:
            return self._by_body[body]
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "r"
        name, n = base, 1
        while name in self.rules or name in _PRIMITIVES or name == "root":
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def rule(self, schema: Any, hint: str = "value", depth: int = 0) -> str:
        if depth > _MAX_DEPTH or not isinstance(schema, Mapping) or schema is True:
            return self.primitive("value")
        if "$ref" in schema:
            return self.rule(self._resolve(str(schema["$ref"])), hint, depth + 1)
        if "const" in schema:
            return self.add(hint, _json_literal(schema["const"]))
        if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
            return self.add(hint, " | ".join(_json_literal(v) for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                names = [self.rule(s, f"{hint}-{i}", depth + 1) for i, s in enumerate(schema[key])]
                return self.add(hint, " | ".join(names))
        kind = schema.get("type")
        if isinstance(kind, list):
            names = [self.rule({**schema, "type": k}, f"{hint}-{k}", depth + 1) for k in kind]
            return self.add(hint, " | ".join(names))
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, hint, depth)
        if kind == "array":
            return self._array(schema, hint, depth)
        if kind in ("string", "integer", "number", "boolean", "null"):
            if kind == "string":
                self.primitive("char")
            return self.primitive(kind)
        return self.primitive("value")

    def _resolve(self, ref: str) -> Any:
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                defs = self.root_schema.get(prefix[2:-1]) or {}
                return defs.get(ref[len(prefix) :], {})
        return {}

    def _object(self, schema: Mapping[str, Any], hint: str, depth: int) -> str:
        props: Mapping[str, Any] = schema.get("properties") or {}
        if not props:
            if schema.get("additionalProperties") is False:
                return self.add(hint, '"{}"')
            self.primitive("char")
            return self.primitive("object")
        required = [k for k in props if k in set(schema.get("required") or [])]
        optional = [k for k in props if k not in required]
        pairs = {k: f"{_literal(json.dumps(k, ensure_ascii=False) + ': ')} {self.rule(props[k], f'{hint}-{k}', depth + 1)}" for k in props}
        if required:
            body = '"{" ' + ' ", " '.join(pairs[k] for k in required)
            for k in optional:
                body += f' ("," " " {pairs[k]})?'
            return self.add(hint, body + ' "}"')
        # no required key: {} or any non-empty subset of the keys, in schema order
        alternatives = [
            " ".join([pairs[k], *(f'("," " " {pairs[later]})?' for later in optional[i + 1 :])])
            for i, k in enumerate(optional)
        ]
        return self.add(hint, '"{" (' + " | ".join(alternatives) + ')? "}"')

    def _array(self, schema: Mapping[str, Any], hint: str, depth: int) -> str:
        item = self.rule(schema.get("items", {}), f"{hint}-item", depth + 1)
        lo = max(0, int(schema.get("minItems") or 0))
        hi_raw = schema.get("maxItems")
        hi = int(hi_raw) if isinstance(hi_raw, int) else None
        if hi is not None and hi < lo:
            hi = lo
        if hi == 0:
            return self.add(hint, '"[]"')
        sep = f'", " {item}'
        if lo == 0:
            more = f"({sep})*" if hi is None or hi > _MAX_REPEAT else f"({sep}){{0,{hi - 1}}}"
            return self.add(hint, f'"[" ({item} {more})? "]"')
        first = f"{item}" + (f" ({sep}){{{lo - 1}}}" if lo > 1 else "")
        extra = "" if hi == lo else (f" ({sep})*" if hi is None or hi > _MAX_REPEAT else f" ({sep}){{0,{hi - lo}}}")
        return self.add(hint, f'"[" {first}{extra} "]"')

    def render(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        needed = set(self._used_primitives)
        # primitives reference each other
        changed = True
        while changed:
            changed = False
            for name in list(needed):
                for other in _PRIMITIVES:
                    if other not in needed and re.search(rf"(?<![\w-]){re.escape(other)}(?![\w-])", _PRIMITIVES[name]):
                        needed.add(other)
                        changed = True
        lines += [f"{name} ::= {_PRIMITIVES[name]}" for name in _PRIMITIVES if name in needed]
        return "\n".join(lines) + "\n"


def schema_rule(schema: Mapping[str, Any]) -> str:
    """A complete grammar (``root``) for instances of one JSON schema."""
    builder = GrammarBuilder(schema)
    return builder.render(builder.rule(schema, "value"))


def _function(tool: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """(name, parameters) of a chat tool ``{"type": "function", "function": {...}}`` or a flat one."""
    fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
    assert isinstance(fn, Mapping)
    params = fn.get("parameters")
    return str(fn.get("name")), params if isinstance(params, Mapping) else {"type": "object"}


def tool_call_grammar(
    tools: Sequence[Mapping[str, Any]],
    *,
    required: bool = False,
    parallel: bool = True,
    syntax: ToolCallSyntax = HERMES,
) -> str:
    """GBNF for one turn: tool call(s) of ``tools`` in ``syntax``, or (unless ``required``) a
    message. A message may not start with ``<``, ``{``, a code fence, ``*`` or white space, so it
    cannot be a call written past the grammar (the ``<tool_call>`` special token's text starts
    with ``<``; small models also write calls as a ```json fence or a bare object)."""
    if not tools:
        raise ValueError("tool_call_grammar needs at least one tool")
    builder = GrammarBuilder()
    alternatives = []
    seen: set[str] = set()
    for tool in tools:
        name, params = _function(tool)
        if name in seen:
            continue
        seen.add(name)
        builder.root_schema = params
        args = builder.rule(params, f"{name}-args")
        head = _literal(json.dumps({"name": name, syntax.arguments_key: 0}, ensure_ascii=False)[: -len("0}")])
        alternatives.append(builder.add(f"{name}-call", f'{head} {args} "}}"'))
    call = builder.add("call", " | ".join(alternatives))
    parts = [_literal(syntax.prefix)] if syntax.prefix else []
    parts += [call] + ([_literal(syntax.suffix)] if syntax.suffix else [])
    block = builder.add("call-block", " ".join(parts))
    calls_rule = builder.add("calls", f"{block} ({_literal(syntax.separator)} {block})*" if parallel else block)
    if required:
        return builder.render(calls_rule)
    message = builder.add("message", "[^<{`* \\t\\r\\n\\x00] [^\\x00]*")
    return builder.render(f"{calls_rule} | {message}")
