"""Property-based fuzzing (hypothesis) of what the collector parses: input rows, agent replies and
results files. The property is always the same: whatever the bytes, the answer is a typed one (a
task, a typed failure, a line set aside, or an :class:`InputError` naming file:line), never a crash,
and nothing is lost.

Run longer with ``NGYM_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ngym.errors import InputError  # noqa: E402
from ngym.rollout.collect import load_tasks, rollout_of  # noqa: E402
from ngym.rollout.output import ROLLOUT_INDEX, TASK_INDEX, scan_results  # noqa: E402

EXAMPLES = int(os.environ.get("NGYM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
#: rows that look like task rows often enough to get past the first checks
rows = st.fixed_dictionaries(
    {"responses_create_params": st.one_of(json_values, st.fixed_dictionaries({"input": json_values}, optional={
        "temperature": json_values, "tools": json_values, "max_output_tokens": json_values}))},
    optional={"agent_ref": json_values | st.fixed_dictionaries({"name": st.text(max_size=6)}), "extra": json_values},
)


def encode(value: Any) -> bytes:
    """JSON as a sloppy writer would produce it: NaN/Infinity and huge integers included."""
    return json.dumps(value, allow_nan=True).encode()


lines = st.one_of(rows.map(encode), json_values.map(encode), st.binary(max_size=40))


@FUZZ
@given(body=st.one_of(st.binary(max_size=60), json_values.map(encode), st.builds(lambda r: encode({"reward": r}), json_values)))
def test_any_agent_reply_is_a_rollout_with_a_finite_reward_or_a_reason(body: bytes) -> None:
    result, problem = rollout_of(body)
    if result is None:
        assert problem
    else:
        reward = result["reward"]
        assert isinstance(reward, int | float) and not isinstance(reward, bool) and math.isfinite(reward)


@FUZZ
@given(content=st.lists(lines, max_size=8))
def test_any_input_file_gives_tasks_or_an_input_error_naming_its_lines(tmp_path: Path, content: list[bytes]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in content) + b"\n")
    try:
        tasks = load_tasks(path, agent_name="a", agents=["a"], num_repeats=2)
    except InputError as e:
        assert f"{path}:" in str(e)
        return
    for task in tasks:
        orjson.dumps(task.row)  # what is sent can be sent
        assert task.agent == "a" and len(task.fp) == 16


results = st.one_of(
    st.builds(lambda t, r, extra: encode({TASK_INDEX: t, ROLLOUT_INDEX: r, "reward": 1.0, **extra}),
              st.integers(0, 3) | st.text(max_size=2), st.integers(0, 2), st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
    lines,
)


@FUZZ
@given(content=st.lists(results, max_size=10), cut=st.booleans())
def test_any_results_file_is_kept_or_set_aside_line_by_line(tmp_path: Path, content: list[bytes], cut: bool) -> None:
    out = tmp_path / "fuzz_out.jsonl"
    aside = tmp_path / "fuzz_out_set_aside.jsonl"
    aside.unlink(missing_ok=True)
    body = b"\n".join(line.replace(b"\n", b" ") for line in content)
    out.write_bytes(body + (b"" if cut else b"\n"))
    scan = scan_results(out)
    kept = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]  # all parse now
    assert len(kept) == scan.kept and len({(int(r[TASK_INDEX]), int(r[ROLLOUT_INDEX])) for r in kept}) == len(kept)
    set_aside = [json.loads(line) for line in aside.read_text().splitlines()] if aside.exists() else []
    complete = body.split(b"\n") if not cut else body.split(b"\n")[:-1]
    # nothing is lost: every complete non-blank line is kept or set aside, with its line number
    assert scan.kept + len(set_aside) == sum(1 for line in complete if line.strip())
    assert all(complete[a["line"] - 1].strip() for a in set_aside)
