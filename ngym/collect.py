"""Rollout collection: read task rows, route each to the agent its ``agent_ref`` names, write one
verified rollout per line.

Every row is checked before the first one is sent (file:line for each problem). Results are
appended and flushed as they complete; a rollout that fails is written to ``<output>_failures.jsonl``
with a typed reason, never to the rollouts as reward 0. ``resume`` skips (task, rollout) pairs
already in the output.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, Field, ValidationError

from ngym.errors import InputError, RolloutError
from ngym.server.client import ServerClient
from ngym.wire.responses import ResponseCreateParams
from ngym.wire.rows import AgentRef

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"
MAX_REPORTED = 20


class CollectArgs(BaseModel):
    """Collect rollouts: send each row of a JSONL file to its agent's /run and write the results.

    Rows are routed by their `agent_ref.name`; `agent_name` fills rows that have none. With
    `config_paths`, the servers are started first and stopped at the end (one-shot mode);
    otherwise they must already be running (`ng_run`).
    """

    input_jsonl_fpath: str = Field(description="JSONL file of task rows (each with responses_create_params)")
    output_jsonl_fpath: str = Field(description="where rollouts are written, one JSON object per line")
    agent_name: str | None = Field(None, description="agent for rows without agent_ref")
    limit: int | None = Field(None, description="only the first N rows of the input")
    num_repeats: int = Field(1, ge=1, description="rollouts per row")
    num_repeats_add_seed: bool = Field(False, description="set responses_create_params.seed to the rollout index")
    num_samples_in_parallel: int | None = Field(None, ge=1, description="max rollouts in flight (default 256)")
    responses_create_params: dict[str, Any] = Field(
        default_factory=dict, description="overrides merged into every row's responses_create_params"
    )
    resume: bool = Field(False, description="keep rollouts already in the output and run only the rest")
    resume_from_cache: bool = Field(False, description="alias of resume (the reference's name)")
    max_attempts: int = Field(3, ge=1, description="attempts per rollout for transient failures")


@dataclass(slots=True)
class Task:
    """One rollout to run: the row as sent to the agent."""

    row: dict[str, Any]
    agent: str
    line: int

    @property
    def key(self) -> tuple[int, int]:
        return int(self.row[TASK_INDEX]), int(self.row[ROLLOUT_INDEX])


@dataclass(slots=True)
class Outcome:
    task: Task
    result: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None


def _problem(path: Path, line: int, message: str) -> str:
    return f"{path}:{line}: {message}"


def load_tasks(
    path: Path,
    *,
    agent_name: str | None = None,
    agents: Iterable[str] | None = None,
    limit: int | None = None,
    num_repeats: int = 1,
    add_seed: bool = False,
    overrides: dict[str, Any] | None = None,
) -> list[Task]:
    """Read, check and expand every row; raise :class:`InputError` listing each bad line."""
    known = set(agents) if agents is not None else None
    problems: list[str] = []
    tasks: list[Task] = []
    task_index: dict[str, int] = {}
    rollouts_seen: dict[int, int] = {}
    try:
        handle = path.open("rb")
    except OSError as e:
        raise InputError(f"Cannot read the input file {str(path)!r}: {e.strerror}. Check +input_jsonl_fpath.") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if limit and lineno > limit:
                break
            text = raw.strip()
            if not text:
                continue
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                problems.append(_problem(path, lineno, f"not valid JSON ({e}). Each line must be one JSON object."))
                continue
            if not isinstance(row, dict):
                problems.append(_problem(path, lineno, f"a row must be a JSON object, not {type(row).__name__}."))
                continue
            if "responses_create_params" not in row:
                problems.append(_problem(path, lineno, "no 'responses_create_params' (the model request of the task)."))
                continue
            if overrides and isinstance(row["responses_create_params"], dict):
                row["responses_create_params"] = {**row["responses_create_params"], **overrides}
            try:
                ResponseCreateParams.model_validate(row["responses_create_params"])
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                problems.append(
                    _problem(path, lineno, f"responses_create_params{'.' + loc if loc else ''}: {first['msg']} ({e.error_count()} error(s)).")
                )
                continue
            if "agent_ref" not in row and agent_name:
                row["agent_ref"] = {"name": agent_name}
            if "agent_ref" not in row:
                problems.append(
                    _problem(path, lineno, "no agent_ref. Add {\"agent_ref\": {\"name\": \"<agent>\"}} or pass +agent_name=<agent>.")
                )
                continue
            try:
                ref = AgentRef.model_validate(row["agent_ref"])
            except ValidationError as e:
                problems.append(_problem(path, lineno, f"bad agent_ref {row['agent_ref']!r}: {e.errors()[0]['msg']}."))
                continue
            if known is not None and ref.name not in known:
                problems.append(
                    _problem(path, lineno, f"agent_ref names {ref.name!r}, which is not running. Agents: {sorted(known)}.")
                )
                continue
            index = task_index.setdefault(text.decode() if isinstance(text, bytes) else text, len(task_index))
            for _ in range(num_repeats):
                rollout = rollouts_seen.get(index, 0)
                rollouts_seen[index] = rollout + 1
                copy = {**row, TASK_INDEX: index, ROLLOUT_INDEX: rollout}
                if add_seed:
                    copy["responses_create_params"] = {**row["responses_create_params"], "seed": rollout}
                tasks.append(Task(copy, ref.name, lineno))
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise InputError(f"{len(problems)} bad row(s) in {path}; nothing was sent:\n  {shown}{more}")
    return tasks


def _classify(error: Exception) -> tuple[str, bool]:
    if isinstance(error, httpx.TimeoutException):
        return "timeout", True
    if isinstance(error, httpx.HTTPError):
        return "agent_unreachable", True
    return "agent_crash", False


async def run_task(client: ServerClient, task: Task, max_attempts: int = 3) -> Outcome:
    """POST the row to its agent's ``/run``; retry transient failures with jittered backoff."""
    error: dict[str, Any] = {}
    for attempt in range(1, max_attempts + 1):
        try:
            answer = await client.post(task.agent, "/run", json=task.row)
        except httpx.HTTPError as e:
            kind, retryable = _classify(e)
            error = {"kind": kind, "error": f"{type(e).__name__}: {e}", "retryable": retryable}
        else:
            if answer.status_code < 300:
                result = orjson.loads(answer.content)
                result.setdefault("agent_ref", {"name": task.agent})
                result[TASK_INDEX], result[ROLLOUT_INDEX] = task.key
                return Outcome(task, result=result)
            try:
                detail = orjson.loads(answer.content)
            except orjson.JSONDecodeError:
                detail = {"error": answer.text[:2000]}
            if not isinstance(detail, dict):
                detail = {"error": str(detail)}
            retryable = bool(detail.get("retryable", answer.status_code in (429, 502, 503, 504)))
            kind = str(detail.get("kind") or ("bad_input" if answer.status_code == 422 else "agent_crash"))
            error = {"kind": kind, "error": str(detail.get("error") or detail), "status": answer.status_code, "retryable": retryable}
        if not error["retryable"] or attempt == max_attempts:
            break
        await asyncio.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random()))
    failure = {
        TASK_INDEX: task.key[0],
        ROLLOUT_INDEX: task.key[1],
        "agent_ref": {"name": task.agent},
        "input_line": task.line,
        "attempts": attempt,
        **error,
    }
    return Outcome(task, failure=failure)


async def run_tasks(
    client: ServerClient, tasks: Iterable[Task], concurrency: int = 256, max_attempts: int = 3
) -> AsyncIterator[Outcome]:
    """Yield outcomes in completion order, with at most ``concurrency`` rollouts in flight."""
    iterator = iter(tasks)
    pending: set[asyncio.Task[Outcome]] = set()

    def refill() -> None:
        while len(pending) < concurrency:
            task = next(iterator, None)
            if task is None:
                return
            pending.add(asyncio.ensure_future(run_task(client, task, max_attempts)))

    refill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                pending.discard(finished)
                yield finished.result()
            refill()
    finally:
        for leftover in pending:
            leftover.cancel()


def done_keys(output: Path) -> set[tuple[int, int]]:
    """Keys already in an output file; a half-written last line is cut off."""
    keys: set[tuple[int, int]] = set()
    if not output.exists():
        return keys
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with output.open("r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
            keys.add((int(row[TASK_INDEX]), int(row[ROLLOUT_INDEX])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return keys


def sibling(output: Path, suffix: str) -> Path:
    """``results/out.jsonl`` -> ``results/out<suffix>``."""
    return output.with_name(output.stem + suffix)


@dataclass(slots=True)
class CollectionReport:
    output: Path
    written: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


async def collect(
    client: ServerClient,
    tasks: list[Task],
    output: Path,
    *,
    concurrency: int = 256,
    max_attempts: int = 3,
    resume: bool = False,
    progress: bool = True,
) -> CollectionReport:
    """Run every task not yet in ``output``; append results and failures as they complete."""
    import time

    from tqdm import tqdm

    output.parent.mkdir(parents=True, exist_ok=True)
    failures_path = sibling(output, "_failures.jsonl")
    done = done_keys(output) if resume else set()
    if not resume:
        output.write_bytes(b"")
    failures_path.unlink(missing_ok=True)
    todo = [t for t in tasks if t.key not in done]
    report = CollectionReport(output=output, skipped=len(tasks) - len(todo))
    t0 = time.monotonic()
    bar = tqdm(total=len(tasks), initial=report.skipped, desc="rollouts", unit="rollout", disable=not progress, dynamic_ncols=True)
    with output.open("ab") as out, bar:
        failures_out = None
        try:
            async for outcome in run_tasks(client, todo, concurrency, max_attempts):
                if outcome.result is not None:
                    out.write(orjson.dumps(outcome.result) + b"\n")
                    out.flush()
                    report.written += 1
                    report.results.append(outcome.result)
                    reward = outcome.result.get("reward")
                    if isinstance(reward, int | float):
                        bar.set_postfix(failed=len(report.failures), refresh=False)
                else:
                    assert outcome.failure is not None
                    if failures_out is None:
                        failures_out = failures_path.open("ab")
                    failures_out.write(orjson.dumps(outcome.failure) + b"\n")
                    failures_out.flush()
                    report.failures.append(outcome.failure)
                    bar.set_postfix(failed=len(report.failures), refresh=False)
                bar.update(1)
        finally:
            if failures_out is not None:
                failures_out.close()
    report.seconds = time.monotonic() - t0
    if resume and done:
        report.results = [orjson.loads(line) for line in output.read_bytes().splitlines() if line.strip()]
    return report


def write_materialized(tasks: list[Task], output: Path) -> Path:
    path = sibling(output, "_materialized_inputs.jsonl")
    with path.open("wb") as f:
        for task in tasks:
            f.write(orjson.dumps(task.row) + b"\n")
    return path


def json_dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)
