"""structured_outputs' verifier, pure functions: the response must be one JSON value that validates
against the row's JSON Schema (``jsonschema``, draft 2020-12) and, where the row names expected
values (``expected_values``: JSON Pointer -> value), holds exactly those values.

As in the reference, the schema is made *strict* first (every property required, no additional
properties: the reference's ``strictify``; config ``strict_schema``), and the whole response text
must be the JSON (config ``allow_code_fence`` also accepts one fenced block and nothing else).
Duplicate keys, ``NaN``/``Infinity`` and trailing text are refused: they are not JSON a consumer
can trust.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_ERRORS = 5
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(?P<body>.*?)\n?\s*```\s*$", re.S)
_MISSING = object()


class InvalidJSON(ValueError):
    """The response is not one plain JSON value."""


@dataclass(slots=True)
class StructuredGrade:
    reward: float
    parsed: bool  # the response is one JSON value
    schema_valid: bool
    schema_errors: list[str] = field(default_factory=list)
    values_checked: int = 0
    values_matched: int = 0
    mismatches: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def strictify(schema: Any) -> Any:
    """A copy of ``schema`` where every object schema with ``properties`` requires them all and allows
    no other property (what the reference does before validating)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise InvalidJSON(f"duplicate key(s) {dupes}")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise InvalidJSON(f"{name} is not JSON")


def parse_json(text: str, *, allow_code_fence: bool = False) -> Any:
    """The one JSON value ``text`` is (strict: no duplicate keys, no NaN/Infinity, nothing after it)."""
    body = text.strip()
    if allow_code_fence and (m := _FENCE.match(body)) is not None:
        body = m.group("body").strip()
    if not body:
        raise InvalidJSON("empty response")
    try:
        return json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise InvalidJSON(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at JSON Pointer ``pointer`` (RFC 6901), or ``_MISSING``."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise ValueError(f"expected_values key {pointer!r} is not a JSON Pointer (it must start with '/')")
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


def same_value(got: Any, want: Any) -> bool:
    """JSON equality, numbers compared numerically (``3`` == ``3.0``, relative 1e-9), bools not numbers."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(same_value(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(same_value(g, w) for g, w in zip(got, want, strict=True))
    return bool(type(got) is type(want) and got == want)


def load_schema(schema_str: str, *, strict: bool = True) -> dict[str, Any]:
    """The row's schema, parsed, checked against its meta-schema, strictified if asked."""
    try:
        schema = json.loads(schema_str)
    except json.JSONDecodeError as e:
        raise ValueError(f"schema_str is not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(schema, dict):
        raise ValueError(f"schema_str must hold a JSON object, not {type(schema).__name__}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ValueError(f"schema_str is not a valid JSON Schema: {e.message}") from None
    return strictify(schema) if strict else schema


def grade(
    text: str,
    schema: dict[str, Any],
    expected_values: dict[str, Any] | None = None,
    *,
    allow_code_fence: bool = False,
) -> StructuredGrade:
    """Reward 1.0 iff ``text`` is one JSON value valid under ``schema`` holding every expected value."""
    try:
        document = parse_json(text, allow_code_fence=allow_code_fence)
    except InvalidJSON as e:
        return StructuredGrade(0.0, parsed=False, schema_valid=False, reason=str(e))
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    messages = [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in errors[:MAX_ERRORS]]
    result = StructuredGrade(0.0, parsed=True, schema_valid=not errors, schema_errors=messages)
    for pointer, want in (expected_values or {}).items():
        got = resolve_pointer(document, pointer)
        result.values_checked += 1
        if got is not _MISSING and same_value(got, want):
            result.values_matched += 1
        else:
            shown = "missing" if got is _MISSING else json.dumps(got)[:100]
            result.mismatches.append(f"{pointer}: expected {json.dumps(want)[:100]}, got {shown}")
    if errors:
        result.reason = f"{len(errors)} schema error(s)"
    elif result.mismatches:
        result.reason = f"{len(result.mismatches)} value(s) differ from the document"
    else:
        result.reward = 1.0
    return result
