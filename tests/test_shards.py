"""Sharded collection, in-process: dealing tasks to shards, folding their outputs into one,
and resuming after a shard or the driver died (issue 17). The shards here are the collector's
``collect`` on a stand-in agent; ``tests/e2e/test_shards.py`` runs real processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from ngym.cli.common import command_args
from ngym.errors import ArgumentError, ConfigError, OutputError, error_class, InputError
from ngym.rollout.collect import (
    CollectArgs,
    ROLLOUT_INDEX,
    TASK_INDEX,
    collect,
    iter_materialized,
    materialize,
    prepare_output,
    task_keys,
)
from ngym.rollout.evaluation import evaluate
from ngym.rollout.output import OutputLock, is_retried, sibling
from ngym.rollout.shards import (
    ShardResult,
    ShardSpec,
    fold_shards,
    port_ranges,
    shard_concurrency,
    shard_output,
    shards_dir,
    split,
)
from ngym.server.client import ServerClient
from omegaconf import OmegaConf

RCP = {"input": [{"role": "user", "content": "q"}], "tools": []}


class EchoAgent(ServerClient):
    """A stand-in for an agent's ``/run``: the row back with reward 1; ``fail_first`` keys answer
    503 ``replica_lost`` on their first attempt."""

    def __init__(self, fail_first: set[tuple[int, int]] | None = None) -> None:
        super().__init__({"a": "http://agent.test"})
        self.calls: list[tuple[int, int]] = []
        self.fail_first = set(fail_first or ())

    async def post(  # type: ignore[override]
        self, server_name: str, url_path: str, json: Any = None, cookies: Any = None, timeout: Any = None
    ) -> httpx.Response:
        await asyncio.sleep(0)
        key = (json[TASK_INDEX], json[ROLLOUT_INDEX])
        self.calls.append(key)
        if key in self.fail_first:
            self.fail_first.discard(key)
            return httpx.Response(503, json={"kind": "replica_lost", "error": "replica 1 restarted", "retryable": True})
        return httpx.Response(200, json={**json, "reward": 1.0})


def inputs(tmp_path: Path, n: int, repeats: int = 1, name: str = "in.jsonl") -> Path:
    src = tmp_path / name
    src.write_text("".join(json.dumps({"responses_create_params": RCP, "q": i}) + "\n" for i in range(n)))
    target = tmp_path / "out_materialized_inputs.jsonl"
    materialize(src, target, agent_name="a", num_repeats=repeats)
    return target


def keys(path: Path) -> list[tuple[int, int]]:
    return [(r[TASK_INDEX], r[ROLLOUT_INDEX]) for r in map(json.loads, path.read_text().splitlines()) if r]


def run_shard_here(inputs_path: Path, shard_out: Path, client: ServerClient) -> None:
    """What a shard worker does, in this process: an ordinary collection into its own locked output."""
    with OutputLock(shard_out):
        asyncio.run(collect(client, iter_materialized(inputs_path), shard_out, progress=False, max_attempts=2))


def driver_round(materialized: Path, out: Path, count: int, client: ServerClient, *, resume: bool) -> list[Path]:
    """The driver's steps (ngym.cli.collect._run_sharded) without processes: prepare, deal, run, and
    return the shards' outputs, not yet folded."""
    fold_shards(out, keep_results=False)  # leftovers of a killed driver first
    current = task_keys(materialized) if resume and out.exists() else None
    done, _ = prepare_output(out, resume=resume, current=current)
    outputs = []
    for i, (path, n) in enumerate(split(materialized, out, done, count)):
        if n:
            run_shard_here(path, shard_output(out, i), client)
            outputs.append(shard_output(out, i))
    return outputs


# ---- dealing -------------------------------------------------------------------------------------


def test_split_deals_tasks_round_robin_in_input_order_and_skips_done(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 5, repeats=2)  # keys (0,0) (0,1) (1,0) ... (4,1)
    out = tmp_path / "out.jsonl"
    done = {(0, 1), (2, 0)}
    dealt = split(materialized, out, done, 3)
    assert [n for _, n in dealt] == [3, 3, 2]
    per_shard = [[(t.key) for t in iter_materialized(path)] for path, _ in dealt]
    assert per_shard == [[(0, 0), (2, 1), (4, 0)], [(1, 0), (3, 0), (4, 1)], [(1, 1), (3, 1)]]
    assert sorted(k for shard in per_shard for k in shard) == sorted(set(keys(materialized)) - done)
    # the same input, dealt again: the same shards, byte for byte
    again = [path.read_bytes() for path, _ in split(materialized, out, done, 3)]
    assert again == [path.read_bytes() for path, _ in dealt]


def test_more_shards_than_tasks_leaves_empty_shards(tmp_path: Path) -> None:
    dealt = split(inputs(tmp_path, 2), tmp_path / "out.jsonl", set(), 4)
    assert [n for _, n in dealt] == [1, 1, 0, 0]


def test_each_shard_gets_its_share_of_the_concurrency_and_its_own_ports() -> None:
    assert shard_concurrency(256, 2) == 128 and shard_concurrency(255, 2) == 128 and shard_concurrency(3, 8) == 1
    ranges = port_ranges(10001, 20000, 3)
    assert ranges[0][0] == 10001 and all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert ranges[-1][1] <= 20000
    with pytest.raises(ConfigError, match="too narrow for 4 shards"):
        port_ranges(10001, 10040, 4)


def test_a_spec_travels_as_json_and_refuses_unknown_keys() -> None:
    spec = ShardSpec(index=1, count=2, inputs="i", output="o", input_jsonl_fpath="in", head_server={"host": "h", "port": 1})
    assert ShardSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValueError, match="extra"):
        ShardSpec.model_validate({**spec.model_dump(), "surprise": 1})


# ---- folding ---------------------------------------------------------------------------------------


def test_fold_appends_every_shard_and_its_failures_then_removes_the_shards(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    client = EchoAgent(fail_first={(1, 0)})
    driver_round(materialized, out, 2, client, resume=False)
    # a failed rollout in shard 1's failures file
    shard1 = shard_output(out, 1)
    sibling(shard1, "_failures.jsonl").open("a").write(
        json.dumps({TASK_INDEX: 9, ROLLOUT_INDEX: 0, "agent_ref": {"name": "a"}, "kind": "timeout", "error": "x"}) + "\n"
    )
    folded = fold_shards(out)
    assert folded.shards == 2 and folded.written == 6 and len(folded.results) == 6
    assert sorted(keys(out)) == [(i, 0) for i in range(6)]
    assert [f[TASK_INDEX] for f in folded.failures] == [9] and folded.retried == 1
    lines = [json.loads(line) for line in sibling(out, "_failures.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and sum(is_retried(r) for r in lines) == 1
    assert not shards_dir(out).exists()
    assert fold_shards(out).shards == 0  # nothing left: a second fold adds nothing
    assert len(keys(out)) == 6


def test_fold_cuts_the_half_written_last_line_a_killed_shard_leaves(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    (shard0,) = driver_round(materialized, out, 1, EchoAgent(), resume=False)
    text = shard0.read_text()
    shard0.write_text(text + text.splitlines()[0][:17])  # kill -9 in the middle of a write
    assert fold_shards(out).written == 4
    assert out.read_text().endswith("\n") and len(keys(out)) == 4


def test_fold_refuses_while_a_shard_is_still_writing(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 2)
    out = tmp_path / "out.jsonl"
    (shard0,) = driver_round(materialized, out, 1, EchoAgent(), resume=False)
    with OutputLock(shard0), pytest.raises(OutputError, match="is being written by pid"):
        fold_shards(out)
    assert shard0.exists() and out.read_text() == ""  # nothing moved


# ---- crashes, then resume ------------------------------------------------------------------------------


def test_a_killed_shard_then_resume_runs_only_what_is_missing_exactly_once(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 10, repeats=3)
    out = tmp_path / "out.jsonl"
    shard0, shard1 = driver_round(materialized, out, 2, EchoAgent(), resume=False)
    # shard 1 was killed: only its first 4 rollouts made it, the 5th half-written
    lines = shard1.read_text().splitlines(keepends=True)
    shard1.write_text("".join(lines[:4]) + lines[4][:30])
    assert fold_shards(out).written == 15 + 4
    client = EchoAgent()
    driver_round(materialized, out, 2, client, resume=True)
    fold_shards(out)
    assert len(client.calls) == 30 - 19  # only what was missing ran
    assert sorted(keys(out)) == sorted(keys(materialized)) and len(keys(out)) == 30


def test_a_driver_killed_mid_fold_repeats_lines_that_the_resume_sets_aside(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    (shard0, shard1) = driver_round(materialized, out, 2, EchoAgent(), resume=False)
    # the driver appended shard 0 to the output and was killed before removing it
    out.write_bytes(shard0.read_bytes())
    client = EchoAgent()
    outputs = driver_round(materialized, out, 3, client, resume=True)  # folds the leftovers first; a new K
    assert outputs == [] and client.calls == []  # everything was done
    assert sorted(keys(out)) == [(i, 0) for i in range(6)] and len(keys(out)) == 6
    aside = [json.loads(line) for line in sibling(out, "_set_aside.jsonl").read_text().splitlines()]
    assert len(aside) == 3 and {a["reason"] for a in aside} == {"repeat a rollout already in the file"}


def test_resume_with_a_changed_input_reruns_changed_rows_across_shards(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    driver_round(materialized, out, 2, EchoAgent(), resume=False)
    fold_shards(out)
    src = tmp_path / "in.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    rows[4]["q"] = "changed"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    materialize(src, materialized, agent_name="a")
    client = EchoAgent()
    driver_round(materialized, out, 2, client, resume=True)
    fold_shards(out)
    assert client.calls == [(4, 0)]
    final = {(r[TASK_INDEX], r[ROLLOUT_INDEX]): r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(final) == [(i, 0) for i in range(6)] and final[(4, 0)]["q"] == "changed"


# ---- retried attempts are recorded, never scored ---------------------------------------------------------


def test_a_replica_lost_attempt_that_was_retried_is_in_the_failures_file_not_scored(tmp_path: Path) -> None:
    materialized = inputs(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    report = asyncio.run(collect(EchoAgent(fail_first={(1, 0)}), iter_materialized(materialized), out, progress=False))
    assert report.written == 3 and report.failures == [] and report.retried == 1
    assert sorted(keys(out)) == [(0, 0), (1, 0), (2, 0)]  # the rollout itself ran again and was kept once
    (line,) = [json.loads(x) for x in sibling(out, "_failures.jsonl").read_text().splitlines()]
    assert line["retried"] is True and line["attempt"] == 1 and line["kind"] == "replica_lost"
    assert (line[TASK_INDEX], line[ROLLOUT_INDEX]) == (1, 0) and "reward" not in line
    evaluation = evaluate(map(json.loads, out.read_text().splitlines()), [line])
    assert all(not env.failures for env in evaluation.environments)  # not a failed rollout


# ---- arguments ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "two", 1.5])
def test_num_shards_must_be_a_whole_number_of_at_least_one(value: Any) -> None:
    cfg = OmegaConf.create({"input_jsonl_fpath": "i", "output_jsonl_fpath": "o", "num_shards": value})
    with pytest.raises(ArgumentError, match=r"\+num_shards="):
        command_args(cfg, CollectArgs, "ng_collect_rollouts")


def test_a_shard_error_is_raised_by_the_driver_with_its_class() -> None:
    result = ShardResult(index=0, error="bad rows", error_type="InputError")
    assert error_class(result.error_type) is InputError
    assert error_class("NoSuchError").__name__ == "NgymError" and error_class("Path").__name__ == "NgymError"


# ---- local shard processes -----------------------------------------------------------------------------------


def test_a_forked_shard_reports_its_exit_code_and_how_it_was_ended(tmp_path: Path) -> None:
    import time

    from ngym.rollout.shards import fork_local

    spec = ShardSpec(index=0, count=1, inputs="i", output=str(tmp_path / "o.jsonl"), input_jsonl_fpath="in")
    done = fork_local(spec, lambda s: 3)
    assert done.proc.wait(30) == 3 and not done.running() and not done.finished()  # no result written
    assert done.how_it_ended() == f"(pid {done.proc.pid}) exited with code 3"
    def sleeper(s: ShardSpec) -> int:
        time.sleep(60)
        return 0

    slow = fork_local(spec, sleeper)
    assert slow.running()
    slow.kill()
    assert not slow.running() and slow.how_it_ended().endswith("was killed by SIGKILL")
