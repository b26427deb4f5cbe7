"""The one row check (ngym.data.rows.check_row) that ng_prepare_data, the collector and the
training API share: what a valid row is, and the message for each way a row is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ngym.data.prepare import check_row as check_line
from ngym.data.rows import ADD_AGENT_REF, ValidRow, check_row
from ngym.errors import InputError
from ngym.rollout.collect import load_tasks
from ngym.training import check_rows

GOOD = {"responses_create_params": {"input": "What is 2+2?"}, "agent_ref": {"name": "a"}, "expected": "4"}


def test_a_valid_row_gives_its_request_and_agent() -> None:
    checked = check_row(GOOD, need_agent=True, agents=["a"])
    assert isinstance(checked, ValidRow)
    assert checked.agent == "a" and checked.params.input == "What is 2+2?" and checked.row is GOOD
    plain = check_row({"responses_create_params": {"input": "x"}})  # the agent not asked for
    assert isinstance(plain, ValidRow) and plain.agent == ""


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([1, 2], "a row must be a JSON object, not list."),
        ({"question": "x"}, "no 'responses_create_params'"),
        ({"responses_create_params": "x", "agent_ref": {"name": "a"}}, "responses_create_params: "),
        ({"responses_create_params": {"input": "x", "temprature": 0.2}}, "responses_create_params.temprature"),
        ({"responses_create_params": {"input": "x"}}, f"no agent_ref.name. {ADD_AGENT_REF}."),
        ({"responses_create_params": {"input": "x"}, "agent_ref": {"nme": "a"}}, "bad agent_ref {'nme': 'a'}"),
        ({"responses_create_params": {"input": "x"}, "agent_ref": {"name": "b"}}, "'b', which is not in this deployment"),
    ],
)
def test_each_wrong_row_is_named(row: object, expected: str) -> None:
    problem = check_row(row, need_agent=True, agents=["a"])
    assert isinstance(problem, str) and expected in problem, problem


def test_the_three_callers_agree_and_keep_their_place(tmp_path: Path) -> None:
    bad = {"responses_create_params": {"input": "x"}, "agent_ref": {"name": "b"}}
    reason = check_row(bad, need_agent=True, agents=["a"])
    assert isinstance(reason, str)
    # the training API: "row N: <reason>"
    with pytest.raises(InputError) as e:
        check_rows([GOOD, bad], ["a"])
    assert f"row 1: {reason}" in str(e.value)
    # the collector: "<file>:<line>: <reason>"
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (GOOD, bad)) + "\n")
    with pytest.raises(InputError) as e:
        load_tasks(path, agents=["a"])
    assert f"{path}:2: {reason}" in str(e.value)
    # ng_prepare_data checks the request only (it stamps agent_ref itself)
    assert not isinstance(check_line(json.dumps(bad).encode()), str)
    problem = check_line(b"{not json")
    assert isinstance(problem, str) and problem.startswith("not valid JSON")
