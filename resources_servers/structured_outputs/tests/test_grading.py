"""structured_outputs' verifier: valid documents in several forms, invalid ones, and tricks."""

from __future__ import annotations

import json

import pytest

from resources_servers.structured_outputs.grading import (
    InvalidJSON,
    grade,
    load_schema,
    parse_json,
    resolve_pointer,
    same_value,
    strictify,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}},
        "status": {"type": "string", "enum": ["active", "inactive"]},
    },
}
STRICT = load_schema(json.dumps(SCHEMA))
GOOD = {"name": "Ada", "age": 36, "tags": ["math"], "address": {"city": "London", "zip": "12345"}, "status": "active"}
EXPECTED = {"/name": "Ada", "/age": 36, "/address/city": "London", "/tags/0": "math"}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        json.dumps(GOOD, indent=2),
        "  \n" + json.dumps(GOOD) + "\n",
        json.dumps({**GOOD, "age": 36.0}),  # 36.0 is an integer in JSON Schema, and equals 36
        json.dumps(dict(reversed(list(GOOD.items())))),  # key order does not matter
    ],
)
def test_valid_documents_score(text: str) -> None:
    result = grade(text, STRICT, EXPECTED)
    assert result.reward == 1.0, result
    assert result.values_checked == result.values_matched == 4


def test_fenced_block_only_when_allowed() -> None:
    fenced = "```json\n" + json.dumps(GOOD) + "\n```"
    assert grade(fenced, STRICT).reward == 0.0  # the reference's rule: the response is the JSON
    assert grade(fenced, STRICT, allow_code_fence=True).reward == 1.0
    assert grade("Here it is:\n" + fenced, STRICT, allow_code_fence=True).reward == 0.0


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({k: v for k, v in GOOD.items() if k != "status"}, "required"),  # strictified: every property required
        ({**GOOD, "extra": 1}, "Additional properties"),
        ({**GOOD, "age": "36"}, "not of type 'integer'"),
        ({**GOOD, "age": -1}, "minimum"),
        ({**GOOD, "status": "Active"}, "is not one of"),
        ({**GOOD, "address": {"city": "London", "zip": "1234"}}, "does not match"),
        ({**GOOD, "tags": "math"}, "not of type 'array'"),
        ([GOOD], "not of type 'object'"),
    ],
)
def test_schema_violations(document: object, why: str) -> None:
    result = grade(json.dumps(document), STRICT)
    assert result.reward == 0.0 and result.parsed and not result.schema_valid
    assert any(why in e for e in result.schema_errors), result.schema_errors


def test_wrong_values_do_not_score() -> None:
    result = grade(json.dumps({**GOOD, "name": "Bob", "age": 37}), STRICT, EXPECTED)
    assert result.reward == 0.0 and result.schema_valid and result.values_matched == 2
    assert result.mismatches == ['/name: expected "Ada", got "Bob"', "/age: expected 36, got 37"]
    assert grade(json.dumps({**GOOD, "tags": []}), STRICT, EXPECTED).mismatches == ['/tags/0: expected "math", got missing']


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "null",
        "{}",
        json.dumps(GOOD) + "\n" + json.dumps(GOOD),  # two documents
        json.dumps(GOOD) + " trailing words",
        "Sure! " + json.dumps(GOOD),
        json.dumps(GOOD)[:-1],  # truncated
        '{"name": "Ada", "name": "Eve", "age": 36, "tags": ["math"], "address": {"city": "London", "zip": "12345"}, "status": "active"}',
        json.dumps({**GOOD, "age": 1}).replace("1", "NaN"),
        "{'name': 'Ada'}",  # a Python dict is not JSON
    ],
)
def test_tricks_and_non_json_get_nothing(text: str) -> None:
    assert grade(text, STRICT, EXPECTED).reward == 0.0


def test_parse_json_reasons() -> None:
    with pytest.raises(InvalidJSON, match="duplicate key"):
        parse_json('{"a": 1, "a": 2}')
    with pytest.raises(InvalidJSON, match="Infinity is not JSON"):
        parse_json('{"a": Infinity}')
    with pytest.raises(InvalidJSON, match="empty"):
        parse_json("")


def test_non_strict_schema_allows_what_it_allows() -> None:
    loose = load_schema(json.dumps(SCHEMA), strict=False)
    assert grade(json.dumps({"name": "Ada", "extra": True}), loose).reward == 1.0
    assert grade(json.dumps({"name": "Ada", "extra": True}), STRICT).reward == 0.0


def test_bad_schemas_are_errors() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        load_schema("{")
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        load_schema('{"type": "objekt"}')
    with pytest.raises(ValueError, match="JSON Pointer"):
        grade(json.dumps(GOOD), STRICT, {"name": "Ada"})


def test_helpers() -> None:
    assert strictify({"properties": {"a": {"type": "object", "properties": {"b": {}}}}}) == {
        "properties": {"a": {"type": "object", "properties": {"b": {}}, "required": ["b"], "additionalProperties": False}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert resolve_pointer({"a/b": {"~c": [1, 2]}}, "/a~1b/~0c/1") == 2
    assert same_value(3, 3.0) and not same_value(True, 1) and not same_value("3", 3) and same_value([1, {"a": 2}], [1, {"a": 2.0}])
