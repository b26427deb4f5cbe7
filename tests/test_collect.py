"""Reading and expanding rollout input rows (spec §6.1, §6.3), resuming, and agent metrics (§6.5)."""

from __future__ import annotations

import asyncio
import errno
import json
import math
import subprocess
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ngym.rollout.collect import (
    INPUT_FP,
    ROLLOUT_INDEX,
    TASK_INDEX,
    CollectionReport,
    Task,
    collect,
    done_keys,
    iter_materialized,
    load_tasks,
    materialize,
    task_keys,
)
from ngym.server.client import ServerClient
from ngym.errors import InputError
from ngym.rollout.metrics import agent_metrics

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMPAT = SHARED / "compat" / "reference-v0.2.1"
EXAMPLES = sorted(COMPAT.glob("*/example.jsonl"))

RCP = {"input": [{"role": "user", "content": "what's it like in sf?"}], "tools": []}


def write_rows(path: Path, rows: list[Any]) -> Path:
    """One line per row: dicts are JSON-encoded, strings are written as they are."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def row(**extra: Any) -> dict[str, Any]:
    return {"responses_create_params": dict(RCP), **extra}


def without_added(task: Task) -> dict[str, Any]:
    return {k: v for k, v in task.row.items() if k not in (TASK_INDEX, ROLLOUT_INDEX, "agent_ref")}


# ---- the reference's example data ------------------------------------------------------------


@pytest.mark.skipif(not EXAMPLES, reason=f"reference example data not found under {COMPAT}")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_reference_example_rows_are_accepted_unchanged(path: Path) -> None:
    originals = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert originals, path
    tasks = load_tasks(path, agent_name="the_agent", agents=["the_agent"])
    assert len(tasks) == len(originals)
    for task, original in zip(tasks, originals, strict=True):
        assert task.agent == "the_agent"
        assert task.row["agent_ref"] == original.get("agent_ref", {"name": "the_agent"})
        assert without_added(task) == {k: v for k, v in original.items() if k != "agent_ref"}
        assert task.row[ROLLOUT_INDEX] == 0
    # distinct lines -> distinct task indices 0..n-1 in file order (unless a line repeats verbatim)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(lines)) == len(lines):
        assert [t.row[TASK_INDEX] for t in tasks] == list(range(len(lines)))
        assert [t.line for t in tasks] == list(range(1, len(lines) + 1))


# ---- routing ---------------------------------------------------------------------------------


def test_agent_ref_with_and_without_type_routes_to_the_named_agent(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "in.jsonl",
        [
            row(agent_ref={"type": "responses_api_agents", "name": "agent_b"}),
            row(agent_ref={"name": "agent_c"}),
            row(),
        ],
    )
    tasks = load_tasks(path, agent_name="agent_a", agents=["agent_a", "agent_b", "agent_c"])
    assert [t.agent for t in tasks] == ["agent_b", "agent_c", "agent_a"]
    # a row's own agent_ref is kept as written; the default fills only rows without one
    assert tasks[0].row["agent_ref"] == {"type": "responses_api_agents", "name": "agent_b"}
    assert tasks[2].row["agent_ref"] == {"name": "agent_a"}


def test_rows_with_agent_ref_need_no_agent_name(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(agent_ref={"name": "x"})])
    (task,) = load_tasks(path)
    assert task.agent == "x"


def test_row_without_agent_and_no_agent_name_is_rejected(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(agent_ref={"name": "x"}), row()])
    with pytest.raises(InputError) as e:
        load_tasks(path)
    assert f"{path}:2" in str(e.value) and "agent_name" in str(e.value)
    assert f"{path}:1" not in str(e.value)


# ---- bad rows --------------------------------------------------------------------------------


def test_every_bad_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "in.jsonl",
        [
            row(),  # 1 ok
            '{"responses_create_params": {"input": "x"',  # 2 malformed JSON
            {"question": "no params"},  # 3 no responses_create_params
            row(),  # 4 ok
            {"responses_create_params": {"input": "x", "temprature": 0.2}},  # 5 unknown key
            row(agent_ref={"type": "responses_api_agents", "name": "not_running"}),  # 6 unknown agent
            "[1, 2]",  # 7 not an object
        ],
    )
    with pytest.raises(InputError) as e:
        load_tasks(path, agent_name="a", agents=["a"])
    message = str(e.value)
    for bad in (2, 3, 5, 6, 7):
        assert f"{path}:{bad}:" in message, message
    for good in (1, 4):
        assert f"{path}:{good}:" not in message
    assert "temprature" in message
    assert "not_running" in message
    assert "5 bad row(s)" in message


def test_bad_line_beyond_limit_is_not_read(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(), row(n=2), "{not json"])
    tasks = load_tasks(path, agent_name="a", limit=2)
    assert len(tasks) == 2


def test_non_object_params_with_overrides_is_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(), {"responses_create_params": "just a string"}])
    with pytest.raises(InputError) as e:
        load_tasks(path, agent_name="a", overrides={"temperature": 0.5})
    assert f"{path}:2" in str(e.value) and "responses_create_params" in str(e.value)


def test_missing_input_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_tasks(tmp_path / "nope.jsonl", agent_name="a")
    assert "nope.jsonl" in str(e.value)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(row()) + "\n\n" + json.dumps(row(n=2)) + "\n")
    tasks = load_tasks(path, agent_name="a")
    assert [t.line for t in tasks] == [1, 3]


# ---- expansion -------------------------------------------------------------------------------


def test_num_repeats_indices_follow_the_spec(tmp_path: Path) -> None:
    a, b = row(q="a"), row(q="b")
    path = write_rows(tmp_path / "in.jsonl", [a, b, a])  # line 3 repeats line 1 verbatim
    tasks = load_tasks(path, agent_name="ag", num_repeats=2)
    keys = [(t.row[TASK_INDEX], t.row[ROLLOUT_INDEX]) for t in tasks]
    # aabbcc order; the identical line shares task 0 and continues its rollout count
    assert keys == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3)]
    assert [t.row["q"] for t in tasks] == ["a", "a", "b", "b", "a", "a"]
    assert [t.line for t in tasks] == [1, 1, 2, 2, 3, 3]
    assert [t.key for t in tasks] == keys
    # each copy is its own dict
    tasks[0].row["q"] = "changed"
    assert tasks[1].row["q"] == "a"


def test_task_index_dedupes_on_exact_text_only(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    same_json_other_text = json.dumps(row(), separators=(",", ":"))
    path.write_text(json.dumps(row()) + "\n" + same_json_other_text + "\n" + json.dumps(row()) + "\n")
    tasks = load_tasks(path, agent_name="a")
    assert [t.row[TASK_INDEX] for t in tasks] == [0, 1, 0]
    assert [t.row[ROLLOUT_INDEX] for t in tasks] == [0, 0, 1]


def test_limit_reads_only_the_first_rows(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(n=i) for i in range(5)])
    tasks = load_tasks(path, agent_name="a", limit=3, num_repeats=2)
    assert [t.row["n"] for t in tasks] == [0, 0, 1, 1, 2, 2]
    assert len(load_tasks(path, agent_name="a", limit=None)) == 5
    assert len(load_tasks(path, agent_name="a", limit=0)) == 5  # falsy = all, as in the reference


def test_responses_create_params_overrides_are_merged(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "in.jsonl",
        [
            {"responses_create_params": {**RCP, "temperature": 1.0, "max_output_tokens": 100}},
            row(),
        ],
    )
    tasks = load_tasks(path, agent_name="a", overrides={"temperature": 0.6, "top_p": 0.9})
    first, second = (t.row["responses_create_params"] for t in tasks)
    assert first == {**RCP, "temperature": 0.6, "top_p": 0.9, "max_output_tokens": 100}
    assert second == {**RCP, "temperature": 0.6, "top_p": 0.9}


def test_override_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row()])
    with pytest.raises(InputError) as e:
        load_tasks(path, agent_name="a", overrides={"temprature": 0.6})
    assert "temprature" in str(e.value)


def test_num_repeats_add_seed_sets_seed_to_rollout_index(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row(), row(q=2)])
    tasks = load_tasks(path, agent_name="a", num_repeats=3, add_seed=True, overrides={"temperature": 0.7})
    assert [t.row["responses_create_params"]["seed"] for t in tasks] == [0, 1, 2, 0, 1, 2]
    assert all(t.row["responses_create_params"]["temperature"] == 0.7 for t in tasks)
    assert all(t.row["responses_create_params"]["input"] == RCP["input"] for t in tasks)


def test_without_add_seed_no_seed_is_set(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.jsonl", [row()])
    tasks = load_tasks(path, agent_name="a", num_repeats=2)
    assert all("seed" not in t.row["responses_create_params"] for t in tasks)


# ---- resume ----------------------------------------------------------------------------------


def test_done_keys_reads_keys_and_truncates_a_half_written_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    complete = [
        {TASK_INDEX: 0, ROLLOUT_INDEX: 0, "reward": 1.0},
        {TASK_INDEX: 3, ROLLOUT_INDEX: 1, "reward": 0.0},
    ]
    text = "".join(json.dumps(r) + "\n" for r in complete)
    out.write_text(text + '{"_ng_task_index": 1, "_ng_rollout_index": 0, "rew')
    assert done_keys(out) == {(0, 0), (3, 1)}
    assert out.read_text() == text


def test_done_keys_on_missing_and_complete_files(tmp_path: Path) -> None:
    assert done_keys(tmp_path / "none.jsonl") == set()
    out = tmp_path / "out.jsonl"
    text = json.dumps({TASK_INDEX: 2, ROLLOUT_INDEX: 5}) + "\n"
    out.write_text(text)
    assert done_keys(out) == {(2, 5)}
    assert out.read_text() == text
    out.write_text('{"_ng_task_index": 0')  # only a partial line
    assert done_keys(out) == set()
    assert out.read_text() == ""


# ---- metrics ---------------------------------------------------------------------------------


def result(agent: str, reward: float, task: int, rollout: int, **extra: Any) -> dict[str, Any]:
    return {
        "agent_ref": {"name": agent},
        "reward": reward,
        TASK_INDEX: task,
        ROLLOUT_INDEX: rollout,
        **extra,
    }


def test_agent_metrics_mean_std_min_max() -> None:
    results = [
        result("a", 1.0, 0, 0, response={"usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}}),
        result("a", 0.0, 0, 1, response={"usage": {"input_tokens": 20, "output_tokens": 4, "total_tokens": 24}}),
        result("a", 1.0, 1, 0, response={"usage": {"input_tokens": 30, "output_tokens": 6, "total_tokens": 36}}),
        result("a", 0.0, 1, 1, response={"usage": {"input_tokens": 40, "output_tokens": 8, "total_tokens": 48}}),
        result("b", 0.25, 0, 0, correct=True),
        result("b", 0.75, 0, 1, correct=False),
        result("c", 0.5, 0, 0),
    ]
    metrics = {m["agent_ref"]["name"]: m for m in agent_metrics(results)}
    assert set(metrics) == {"a", "b", "c"}
    a, b, c = metrics["a"], metrics["b"], metrics["c"]
    assert a["count"] == 4
    assert a["mean/reward"] == pytest.approx(0.5)
    assert a["std/reward"] == pytest.approx(math.sqrt(1 / 3))  # sample std, as pandas
    assert a["min/reward"] == 0.0 and a["max/reward"] == 1.0
    assert a["mean/input_tokens"] == pytest.approx(25.0)
    assert a["max/total_tokens"] == 48.0 and a["min/output_tokens"] == 2.0
    assert b["mean/reward"] == pytest.approx(0.5)
    assert b["std/reward"] == pytest.approx(math.sqrt(0.125))
    assert b["mean/correct"] == pytest.approx(0.5)  # booleans count as 0/1
    assert c["count"] == 1 and c["std/reward"] == 0.0 and c["mean/reward"] == 0.5
    # index bookkeeping is not a metric
    assert not any(TASK_INDEX in k or ROLLOUT_INDEX in k for m in metrics.values() for k in m)


def test_agent_metrics_of_nothing_is_empty() -> None:
    assert agent_metrics([]) == []


def test_run_tasks_draws_rows_lazily_and_bounds_in_flight() -> None:
    import asyncio

    import httpx

    from ngym.rollout.collect import Task, run_tasks
    from ngym.server.client import ServerClient

    in_flight = peak = pulled = 0

    class CountingClient(ServerClient):
        async def post(self, server_name, url_path, json=None, cookies=None, timeout=None):  # type: ignore[override]
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0)
            in_flight -= 1
            return httpx.Response(200, json={"reward": 1.0})

    def rows():
        nonlocal pulled
        for i in range(20_000):
            pulled += 1
            yield Task({"_ng_task_index": i, "_ng_rollout_index": 0}, "a", i + 1)

    async def main() -> tuple[int, int]:
        count, pulled_at_first = 0, None
        async for outcome in run_tasks(CountingClient({"a": "http://a"}), rows(), concurrency=500):
            assert outcome.result is not None
            if pulled_at_first is None:
                pulled_at_first = pulled
            count += 1
        return count, pulled_at_first or 0

    count, pulled_at_first = asyncio.run(main())
    assert count == 20_000
    assert peak <= 500
    assert pulled_at_first <= 501  # rows are read as slots free up, not all up front


# ---- issue 15: a bad reply, a bad line, a changed input, a full disk -------------------------


class ScriptedAgentClient(ServerClient):
    """An in-process stand-in for an agent's ``/run``: ``answer(row)`` gives the reply (or raises)."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx.Response]) -> None:
        super().__init__({"a": "http://agent.test"})
        self.answer = answer
        self.calls = 0

    async def post(self, server_name, url_path, json=None, cookies=None, timeout=None):  # type: ignore[override]
        self.calls += 1
        await asyncio.sleep(0)
        return self.answer(json)


def echo_reward(row: dict[str, Any]) -> httpx.Response:
    """A well-behaved agent: the row back, with reward 1."""
    return httpx.Response(200, json={**row, "reward": 1.0})


def materialized(tmp_path: Path, rows: list[Any], name: str = "in.jsonl", **options: Any) -> Path:
    path = write_rows(tmp_path / name, rows)
    target = tmp_path / "out_materialized_inputs.jsonl"
    materialize(path, target, agent_name="a", **options)
    return target


def run_collect(client: ServerClient, inputs: Path, out: Path, **options: Any) -> CollectionReport:
    current = task_keys(inputs) if options.get("resume") and out.exists() else None
    return asyncio.run(collect(client, iter_materialized(inputs), out, progress=False, current=current, **options))


NOT_ROLLOUTS = {
    "not JSON": b"<html>502 Bad Gateway</html>",
    "a JSON list": b"[1, 2]",
    "NaN": b"NaN",
    "a NaN reward": b'{"reward": NaN}',
    "no reward": b'{"response": {}}',
    "a string reward": b'{"reward": "1.0"}',
    "a boolean reward": b'{"reward": true}',
    "a null reward": b'{"reward": null}',
}


@pytest.mark.parametrize("body", NOT_ROLLOUTS.values(), ids=NOT_ROLLOUTS.keys())
def test_an_http_200_that_is_not_a_rollout_is_a_typed_failure_not_a_crash(tmp_path: Path, body: bytes) -> None:
    inputs = materialized(tmp_path, [row()])
    client = ScriptedAgentClient(lambda _: httpx.Response(200, content=body))
    report = run_collect(client, inputs, tmp_path / "out.jsonl")
    assert report.written == 0 and (tmp_path / "out.jsonl").read_text() == ""  # never a rollout, never reward 0
    (failure,) = report.failures
    assert failure["kind"] == "agent_crash" and "not a rollout" in failure["error"] and "'a'" in failure["error"]
    assert json.loads((tmp_path / "out_failures.jsonl").read_text())["kind"] == "agent_crash"


@pytest.mark.parametrize("error", [OSError(errno.EMFILE, "Too many open files"), RuntimeError("bug")], ids=["EMFILE", "bug"])
def test_an_exception_while_sending_is_a_typed_failure(tmp_path: Path, error: Exception) -> None:
    def boom(_: dict[str, Any]) -> httpx.Response:
        raise error

    inputs = materialized(tmp_path, [row(), row(q=1)])
    report = run_collect(ScriptedAgentClient(boom), inputs, tmp_path / "out.jsonl", max_attempts=2)
    assert len(report.failures) == 2
    if isinstance(error, OSError):
        assert {f["kind"] for f in report.failures} == {"agent_unreachable"}
        assert all(f["attempts"] == 2 and "ulimit -n" in f["error"] for f in report.failures)
    else:
        assert {f["kind"] for f in report.failures} == {"agent_crash"}


def test_a_corrupt_line_in_the_middle_is_set_aside_by_line_number_and_rerun(tmp_path: Path) -> None:
    inputs = materialized(tmp_path, [row(q=i) for i in range(5)])
    out = tmp_path / "out.jsonl"
    assert run_collect(ScriptedAgentClient(echo_reward), inputs, out).written == 5
    lines = out.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2] + "\x00garbage"  # what two writers interleaving leave
    lines.insert(4, lines[0])  # a duplicate
    out.write_text("\n".join(lines) + "\n")
    client = ScriptedAgentClient(echo_reward)
    report = run_collect(client, inputs, out, resume=True)
    assert client.calls == 1 and report.written == 1 and report.skipped == 4
    assert "line 3" in report.resume_note and "line 5" in report.resume_note
    keys = sorted((r[TASK_INDEX], r[ROLLOUT_INDEX]) for r in map(json.loads, out.read_text().splitlines()))
    assert keys == [(i, 0) for i in range(5)]  # every task exactly once
    aside = [json.loads(line) for line in (tmp_path / "out_set_aside.jsonl").read_text().splitlines()]
    assert [a["line"] for a in aside] == [3, 5]  # nothing silently dropped: the text is kept
    assert "garbage" in aside[0]["text"] and aside[1]["text"] == lines[0]


def test_resume_compares_content_reruns_changed_rows_and_reuses_moved_ones(tmp_path: Path) -> None:
    inputs = materialized(tmp_path, [row(q=i) for i in range(4)], num_repeats=2)
    out = tmp_path / "out.jsonl"
    run_collect(ScriptedAgentClient(echo_reward), inputs, out)
    before = {(r[TASK_INDEX], r[ROLLOUT_INDEX]): r for r in map(json.loads, out.read_text().splitlines())}
    assert all(isinstance(r[INPUT_FP], str) for r in before.values())
    # row 1 changed, row 2 removed, a new row first: every index shifts
    inputs = materialized(tmp_path, [row(q="new"), row(q=0), row(q="changed"), row(q=3)], num_repeats=2)
    client = ScriptedAgentClient(echo_reward)
    report = run_collect(client, inputs, out, resume=True)
    assert client.calls == 4  # the new and the changed row, 2 rollouts each
    assert report.skipped == 4 and "changed or are gone" in report.resume_note and "new task index" in report.resume_note
    after = {(r[TASK_INDEX], r[ROLLOUT_INDEX]): r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(after) == [(t, r) for t in range(4) for r in range(2)]
    for key, rollout in after.items():  # each index points at a rollout of the row it now names
        assert rollout["q"] == ["new", 0, "changed", 3][key[0]]
    assert before[(0, 0)]["q"] == after[(1, 0)]["q"] == 0  # reused under its new index, not rerun


def test_previous_failures_are_kept_until_the_run_has_read_its_output(tmp_path: Path) -> None:
    inputs = materialized(tmp_path, [row(q=i) for i in range(3)])
    out = tmp_path / "out.jsonl"
    run_collect(ScriptedAgentClient(lambda r: httpx.Response(500, json={"kind": "model_error", "error": "x"})), inputs, out,
                max_attempts=1)
    failures = (tmp_path / "out_failures.jsonl").read_text()
    assert failures.count("\n") == 3
    run_collect(ScriptedAgentClient(echo_reward), inputs, out, resume=True)
    assert (tmp_path / "out_failures_previous.jsonl").read_text() == failures
    assert not (tmp_path / "out_failures.jsonl").exists()


def test_memory_is_bounded_by_concurrency_not_by_row_size(tmp_path: Path) -> None:
    big = "x" * 120_000
    inputs = materialized(tmp_path, [row(q=i, document=big) for i in range(300)])  # 36 MB of rows
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        report = run_collect(ScriptedAgentClient(echo_reward), inputs, tmp_path / "out.jsonl", concurrency=8)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert report.written == 300
    assert held < 8_000_000, f"{held / 1e6:.1f} MB still held after 300 rollouts with a 120 KB field each"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that fills up (root and mount(8) needed; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_what_was_written_resumes(small_fs: Path, tmp_path: Path) -> None:
    inputs = materialized(tmp_path, [row(q=i, pad="y" * 2_000) for i in range(400)])  # ~1 MB of rollouts
    out = small_fs / "out.jsonl"
    report = run_collect(ScriptedAgentClient(echo_reward), inputs, out, concurrency=4)
    assert report.aborted is not None and "No space left on device" in report.aborted and "+resume=true" in report.aborted
    assert 0 < report.written < 400
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_fs)], check=True)
    report = run_collect(ScriptedAgentClient(echo_reward), inputs, out, resume=True)
    assert report.aborted is None
    keys = sorted((r[TASK_INDEX], r[ROLLOUT_INDEX]) for r in map(json.loads, out.read_text().splitlines()))
    assert keys == [(i, 0) for i in range(400)]


def test_doctests_of_the_output_lock_and_secret_scrubbing() -> None:
    import doctest

    import ngym.config.secrets
    import ngym.rollout.output

    for module in (ngym.rollout.output, ngym.config.secrets):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted and not result.failed, module.__name__
