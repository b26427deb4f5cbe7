"""Grading of code answers against hidden unit tests (LiveCodeBench format), outside the sandbox.

Rows carry ``verifier_metadata.unit_tests = {"inputs": [...], "outputs": [...], "fn_name": ...}``:

* with ``fn_name`` (call-based): each input is one JSON value per line (the arguments), each output
  one JSON value; the function's return value must equal it (tuples count as lists; floats within
  1e-9 relative);
* without (standard input): the program reads the input on stdin; its stdout must equal the output
  line by line after stripping, or number by number (``Decimal``) where a line holds numbers.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, model_validator

from resources_servers.code_gen.code_sandbox import RunResult

_FENCE = re.compile(r"^\s*```")


class UnitTests(BaseModel):
    """LiveCodeBench's test format (the reference's ``UnitTests``)."""

    inputs: list[str]
    outputs: list[str]
    fn_name: str | None = None

    @model_validator(mode="after")
    def _same_length(self) -> UnitTests:
        if len(self.inputs) != len(self.outputs):
            raise ValueError(f"unit_tests has {len(self.inputs)} inputs but {len(self.outputs)} outputs")
        if not self.inputs:
            raise ValueError("unit_tests has no test")
        return self


def extract_code(text: str) -> str | None:
    """The last fenced code block of ``text`` (LiveCodeBench's rule: the last two fence lines), or None."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if _FENCE.match(line)]
    if len(fences) < 2:
        return None
    code = "\n".join(lines[fences[-2] + 1: fences[-1]])
    return code if code.strip() else None


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want or (isinstance(got, float) or isinstance(want, float)) and math.isclose(
            got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same_value(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_same_value(got[k], want[k]) for k in got)
    return bool(got == want)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(x) for x in line.split()]
    except InvalidOperation:
        return None


def same_stdout(got: str, want: str) -> bool:
    """LiveCodeBench's standard-input comparison: stripped lines, or the numbers on them."""
    got_lines, want_lines = _lines(got), _lines(want)
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines, strict=True):
        if g == w:
            continue
        gd, wd = _decimals(g), _decimals(w)
        if gd is None or wd is None or gd != wd:
            return False
    return True


class TestOutcome(BaseModel):
    """One hidden test: passed or why not (``expected`` is never included: the tests stay hidden)."""

    passed: bool
    status: str
    detail: str | None = None


def grade(tests: UnitTests, result: RunResult) -> list[TestOutcome]:
    """One outcome per test; a test without a record (the program died or ran out of time) fails."""
    outcomes = []
    for i, want in enumerate(tests.outputs):
        record = result.records.get(i)
        if record is None:
            status = "timeout" if result.timed_out else "no_result"
            outcomes.append(TestOutcome(passed=False, status=status, detail="the program did not report this test"))
            continue
        status = str(record.get("status"))
        if status != "ok":
            outcomes.append(TestOutcome(passed=False, status=status, detail=str(record.get("error", ""))[-500:]))
            continue
        if tests.fn_name is not None:
            try:
                passed = _same_value(json.loads(str(record.get("value"))), json.loads(want))
            except ValueError:
                passed = False
        else:
            passed = same_stdout(str(record.get("stdout", "")), want)
        outcomes.append(TestOutcome(passed=passed, status="passed" if passed else "wrong_answer"))
    return outcomes


def job_for(tests: UnitTests, code: str, per_test_timeout: float) -> dict[str, Any]:
    """The sandbox job that runs ``code`` on the tests' inputs (outputs stay here)."""
    mode = "call" if tests.fn_name is not None else "stdio"
    return {"mode": mode, "code": code, "fn_name": tests.fn_name, "inputs": tests.inputs,
            "per_test_timeout": per_test_timeout}
