"""Rollout collection: read task rows, route each to the agent its ``agent_ref`` names, write one
verified rollout per line.

Every row is checked before the first one is sent (file:line for each problem). Results are
appended and flushed as they complete; a rollout that fails is written to ``<output>_failures.jsonl``
with a typed reason, never to the rollouts as reward 0. ``resume`` skips (task, rollout) pairs
already in the output whose input row is unchanged (each rollout carries a fingerprint of the
materialized row it ran from); what the output file may hold and who may write it is
:mod:`ngym.rollout.output`.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import math
import os
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, Field

from ngym.data.sources import Columns, iter_rows as iter_input_rows
from ngym.data.rows import ADD_AGENT_REF, check_row
from ngym.errors import FailureKind, InputError, classify_failure
from ngym.rollout.output import INPUT_FP as INPUT_FP
from ngym.rollout.output import RETRIED as RETRIED
from ngym.rollout.output import is_retried as is_retried
from ngym.rollout.output import ROLLOUT_INDEX as ROLLOUT_INDEX
from ngym.rollout.output import TASK_INDEX as TASK_INDEX
from ngym.rollout.output import append_line, iter_rows, scan_results
from ngym.rollout.output import sibling as sibling
from ngym.server.client import Reply, ServerClient

log = logging.getLogger("ngym.rollout.collect")

MAX_REPORTED = 20
#: attempts for a rollout that timed out: the agent already waited the model's full timeout
TIMEOUT_ATTEMPTS = 2


class CollectArgs(BaseModel):
    """Collect rollouts: send each row of a JSONL file to its agent's /run and write the results.

    Rows are routed by their `agent_ref.name`; `agent_name` fills rows that have none. With
    `config_paths`, the servers are started first and stopped at the end (one-shot mode);
    otherwise they must already be running (`ng_run`).
    """

    input_jsonl_fpath: str = Field(
        description="task rows: a JSONL file (each with responses_create_params), a Parquet file or a saved Hugging Face dataset"
    )
    input_columns: dict[str, Any] | None = Field(
        None, description="Parquet/saved dataset: which column is the prompt (or messages), which are task fields (docs/interop.md)"
    )
    output_jsonl_fpath: str = Field(description="where rollouts are written, one JSON object per line")
    agent_name: str | None = Field(None, description="agent for rows without agent_ref")
    limit: int | None = Field(None, ge=1, description="only the first N rows of the input (at least 1; omit for all)")
    num_repeats: int = Field(1, ge=1, description="rollouts per row")
    num_repeats_add_seed: bool = Field(False, description="set responses_create_params.seed to the rollout index")
    num_samples_in_parallel: int | None = Field(None, ge=1, description="max rollouts in flight (default 256)")
    responses_create_params: dict[str, Any] = Field(
        default_factory=dict, description="overrides merged into every row's responses_create_params"
    )
    resume: bool = Field(False, description="keep rollouts already in the output and run only the rest")
    resume_from_cache: bool = Field(False, description="alias of resume (the reference's name)")
    overwrite: bool = Field(False, description="replace a non-empty output (without it or +resume=true, one is refused)")
    max_attempts: int = Field(3, ge=1, description="attempts per rollout for transient failures (timeouts: at most 2)")
    rollout_timeout_s: float = Field(3600.0, gt=0, description="deadline of one attempt of one rollout, seconds")
    max_consecutive_failures: int = Field(
        32, ge=1, description="stop after this many infrastructure failures in a row (a dead server)"
    )
    num_shards: int = Field(
        1, ge=1, description="collector processes sharing the input (one-shot: each starts and hosts its own servers); "
        "one output; +num_samples_in_parallel is the total across them",
    )


@dataclass(slots=True)
class Task:
    """One rollout to run: the row as sent to the agent."""

    row: dict[str, Any]
    agent: str
    line: int
    #: fingerprint of the materialized row (its content without the indices): what resume compares
    fp: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return int(self.row[TASK_INDEX]), int(self.row[ROLLOUT_INDEX])


@dataclass(slots=True)
class Outcome:
    task: Task
    result: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    #: failed attempts that were tried again (e.g. ``replica_lost``): recorded, never scored
    retried: list[dict[str, Any]] = field(default_factory=list)


def _problem(path: Path, line: int, message: str) -> str:
    return f"{path}:{line}: {message}"


def _scan(
    path: Path,
    problems: list[str],
    *,
    agent_name: str | None = None,
    agents: Iterable[str] | None = None,
    limit: int | None = None,
    num_repeats: int = 1,
    add_seed: bool = False,
    overrides: dict[str, Any] | None = None,
    columns: Columns | None = None,
) -> Iterator[Task]:
    """Stream the rows of ``path``: check each, expand it, yield its tasks; bad lines go to ``problems``.

    Identical lines share a task index (kept as a 16-byte hash per distinct line, not the line)."""
    known = set(agents) if agents is not None else None
    task_index: dict[bytes, int] = {}
    rollouts_seen: dict[int, int] = {}
    for lineno, text, row in iter_input_rows(path, "input file", columns=columns, problems=problems, limit=limit):
        if overrides and isinstance(row.get("responses_create_params"), dict):
            row["responses_create_params"] = {**row["responses_create_params"], **overrides}
        if "agent_ref" not in row and agent_name:
            row["agent_ref"] = {"name": agent_name}
        checked = check_row(row, need_agent=True, agents=known, add_agent=f"{ADD_AGENT_REF} or pass +agent_name=<agent>")
        if isinstance(checked, str):
            problems.append(_problem(path, lineno, checked))
            continue
        index = task_index.setdefault(hashlib.blake2b(text, digest_size=16).digest(), len(task_index))
        fp = fingerprint(row)
        for _ in range(num_repeats):
            rollout = rollouts_seen.get(index, 0)
            rollouts_seen[index] = rollout + 1
            copy = {**row, TASK_INDEX: index, ROLLOUT_INDEX: rollout}
            if add_seed:
                copy["responses_create_params"] = {**row["responses_create_params"], "seed": rollout}
            yield Task(copy, checked.agent, lineno, fingerprint(copy) if add_seed else fp)


def fingerprint(row: dict[str, Any]) -> str:
    """16 hex digits over the row's content as sent (keys sorted; indices left out): two rows with
    the same fingerprint run the same task."""
    content = {k: v for k, v in row.items() if k not in (TASK_INDEX, ROLLOUT_INDEX)}
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def _raise_problems(path: Path, problems: list[str]) -> None:
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise InputError(f"{len(problems)} bad row(s) in {path}; nothing was sent:\n  {shown}{more}")


def load_tasks(path: Path, **options: Any) -> list[Task]:
    """Read, check and expand every row into memory; raise :class:`InputError` listing each bad line.
    (Options as :func:`materialize`; use that for large inputs.)"""
    problems: list[str] = []
    tasks = list(_scan(path, problems, **options))
    _raise_problems(path, problems)
    return tasks


def materialize(path: Path, materialized: Path, **options: Any) -> int:
    """Check every row of ``path`` and write the expanded rows (with their indices) to
    ``materialized``, streaming: memory does not grow with the input. Raises :class:`InputError`
    (listing each bad line, leaving no file) before anything is sent. Returns the number of rollouts.

    Options: ``agent_name``, ``agents`` (names that exist), ``limit``, ``num_repeats``,
    ``add_seed``, ``overrides`` (merged into each ``responses_create_params``), ``columns`` (the
    column mapping of a Parquet file or saved dataset, :class:`ngym.data.sources.Columns`)."""
    problems: list[str] = []
    count = 0
    materialized.parent.mkdir(parents=True, exist_ok=True)
    tmp = materialized.with_name(materialized.name + ".tmp")
    with tmp.open("wb") as out:
        for task in _scan(path, problems, **options):
            if not problems:
                out.write(orjson.dumps({**task.row, "_ng_input_line": task.line, INPUT_FP: task.fp}) + b"\n")
            count += 1
    if problems:
        tmp.unlink(missing_ok=True)
        _raise_problems(path, problems)
    tmp.replace(materialized)
    return count


def iter_materialized(materialized: Path) -> Iterator[Task]:
    """Stream the tasks of a materialized inputs file."""
    with materialized.open("rb") as f:
        for raw in f:
            if raw.strip():
                row = orjson.loads(raw)
                line = int(row.pop("_ng_input_line", 0))
                fp = row.pop(INPUT_FP, None)
                yield Task(row, str(row["agent_ref"]["name"]), line, fp if isinstance(fp, str) else fingerprint(row))


def task_keys(materialized: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """(fingerprint, rollout index) -> (task, rollout) of every task: what a resume compares with."""
    return {(t.fp, t.key[1]): t.key for t in iter_materialized(materialized)}


INFRA_KINDS = frozenset(kind for kind in FailureKind if kind.infrastructure)


async def _post_run(client: ServerClient, task: Task, deadline_s: float) -> Reply:
    return await asyncio.wait_for(client.post(task.agent, "/run", json=task.row, timeout=deadline_s + 5), deadline_s)


def rollout_of(content: bytes) -> tuple[dict[str, Any] | None, str]:
    """An agent's HTTP 200 body as a rollout, or why it is not one (non-JSON, ``NaN``, not an
    object, no reward, a reward that is not a finite number)."""
    try:
        result = orjson.loads(content)
    except orjson.JSONDecodeError as e:
        return None, f"a body that is not JSON ({e}; it starts {content[:120]!r})"
    if not isinstance(result, dict):
        return None, f"a JSON {type(result).__name__}, not an object"
    reward = result.get("reward")
    if "reward" not in result:
        return None, "no 'reward'"
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        return None, f"a reward that is not a finite number ({reward!r})"
    return result, ""


def _attempt_error(client: ServerClient, task: Task, e: Exception, deadline_s: float) -> dict[str, Any]:
    """A failed attempt as a typed failure: never an exception out of :func:`run_task`."""
    url = client.urls.get(task.agent, "?")
    kind, retryable = classify_failure(e, FailureKind.AGENT_CRASH)
    if isinstance(e, TimeoutError):
        text = f"no answer within the rollout deadline of {deadline_s:g} s"
    elif isinstance(e, httpx.HTTPError):
        text = f"{type(e).__name__}: {e}"
    elif isinstance(e, OSError):  # e.g. EMFILE: too many open files at high concurrency
        kind, retryable = FailureKind.AGENT_UNREACHABLE, True
        text = f"{type(e).__name__}: {e}"
        if e.errno == errno.EMFILE:
            text += " (lower +num_samples_in_parallel, or raise `ulimit -n`)"
    else:
        text = f"the collector could not handle the answer: {type(e).__name__}: {e}"
    return {"kind": kind, "error": f"agent {task.agent!r} at {url}: {text}", "retryable": retryable}


async def run_task(client: ServerClient, task: Task, max_attempts: int = 3, deadline_s: float = 3600.0) -> Outcome:
    """POST the row to its agent's ``/run``; retry transient failures with jittered backoff.
    Each attempt has a deadline of ``deadline_s`` seconds; a timeout is tried at most
    :data:`TIMEOUT_ATTEMPTS` times. Every failure, whatever raised it, is a typed failure; each
    failed attempt that was tried again is kept in ``Outcome.retried`` (see :func:`retried_record`)."""
    error: dict[str, Any] = {}
    retried: list[dict[str, Any]] = []
    for attempt in range(1, max_attempts + 1):
        try:
            answer = await _post_run(client, task, deadline_s)
        except Exception as e:
            error = _attempt_error(client, task, e, deadline_s)
        else:
            if answer.status_code < 300:
                result, problem = rollout_of(answer.content)
                if result is not None:
                    result.setdefault("agent_ref", {"name": task.agent})
                    result[TASK_INDEX], result[ROLLOUT_INDEX] = task.key
                    if task.fp:
                        result[INPUT_FP] = task.fp
                    return Outcome(task, result=result, retried=retried)
                url = client.urls.get(task.agent, "?")
                error = {"kind": FailureKind.AGENT_CRASH, "error": f"agent {task.agent!r} at {url} answered HTTP {answer.status_code} "
                         f"with {problem}: not a rollout", "status": answer.status_code, "retryable": False}
            else:
                error = _error_reply(answer)
        limit = min(max_attempts, TIMEOUT_ATTEMPTS) if error["kind"] == FailureKind.TIMEOUT else max_attempts
        if not error["retryable"] or attempt >= limit:
            break
        retried.append(retried_record(task, attempt, error))
        await asyncio.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random()))
    failure = {
        TASK_INDEX: task.key[0],
        ROLLOUT_INDEX: task.key[1],
        "agent_ref": {"name": task.agent},
        "input_line": task.line,
        "attempts": attempt,
        **error,
    }
    if task.fp:
        failure[INPUT_FP] = task.fp
    return Outcome(task, failure=failure, retried=retried)


def retried_record(task: Task, attempt: int, error: dict[str, Any]) -> dict[str, Any]:
    """A failed attempt that the collector tries again, as a line of the failures file:
    ``"retried": true`` and the attempt's number. It is not a failed rollout (the rollout's own
    outcome is a result or a final failure line); readers that count failures skip it
    (:func:`is_retried`)."""
    record = {
        TASK_INDEX: task.key[0],
        ROLLOUT_INDEX: task.key[1],
        "agent_ref": {"name": task.agent},
        "input_line": task.line,
        RETRIED: True,
        "attempt": attempt,
        **error,
    }
    if task.fp:
        record[INPUT_FP] = task.fp
    return record


def _error_reply(answer: Reply) -> dict[str, Any]:
    try:
        detail = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        detail = {"error": answer.text[:2000]}
    if not isinstance(detail, dict):
        detail = {"error": str(detail)[:2000]}
    kind, retryable = classify_failure(answer.status_code, FailureKind.AGENT_CRASH)
    kind = FailureKind.parse(detail.get("kind")) or kind  # the agent said where it failed
    retryable = bool(detail.get("retryable", retryable))
    message = detail.get("error") or detail.get("detail") or detail
    return {"kind": kind, "error": str(message)[:4000], "status": answer.status_code, "retryable": retryable}


async def run_tasks(
    client: ServerClient,
    tasks: Iterable[Task],
    concurrency: int = 256,
    max_attempts: int = 3,
    deadline_s: float = 3600.0,
    ramp_step: int | None = None,
) -> AsyncIterator[Outcome]:
    """Yield outcomes in completion order, with at most ``concurrency`` rollouts in flight; tasks
    are drawn from ``tasks`` only as slots free up (a 200k-row input is never all in memory).
    ``ramp_step``: rollouts started at most per ramp interval (default :data:`RAMP_STEP`; the
    shards of a sharded collection each take their share)."""
    # a socket per rollout in flight (unless every server is hosted in this process): the default
    # 1024 descriptors run out
    from ngym.server import local

    if concurrency > 256 and any(local.app_for(url) is None for url in client.urls.values()):
        from ngym.server.process import raise_open_file_limit

        limit = raise_open_file_limit()
        if limit < concurrency * 5 // 4 + 64:
            log.warning(
                "%d rollouts in flight need about %d open files (a socket each, plus idle ones while the mix "
                "of agents shifts), but this process may open %d (`ulimit -n`; the hard limit caps it). Lower "
                "+num_samples_in_parallel or raise the hard limit, or some rollouts will fail with 'Too many open files'.",
                concurrency, concurrency * 5 // 4 + 64, limit,
            )
    iterator = iter(tasks)
    pending: set[asyncio.Task[Outcome]] = set()
    # finished rollouts arrive through a queue: O(1) per completion at any concurrency (asyncio.wait
    # over the pending set would touch every in-flight task at each completion)
    finished: asyncio.Queue[asyncio.Task[Outcome]] = asyncio.Queue()
    # ramp up: at most RAMP_STEP more rollouts every RAMP_EVERY_S, so thousands of new connections
    # do not all knock at once (a saturated server accepts late; a SYN flood ends in connect timeouts)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    step = ramp_step or RAMP_STEP

    def cap() -> int:
        return min(concurrency, step * (1 + int((loop.time() - t0) / RAMP_EVERY_S)))

    def refill() -> None:
        limit = cap()
        while len(pending) < limit:
            task = next(iterator, None)
            if task is None:
                return
            running = asyncio.ensure_future(run_task(client, task, max_attempts, deadline_s))
            running.add_done_callback(finished.put_nowait)
            pending.add(running)

    refill()
    try:
        while pending:
            if cap() < concurrency:
                try:
                    done = await asyncio.wait_for(finished.get(), RAMP_EVERY_S)
                except TimeoutError:
                    refill()
                    continue
            else:
                done = await finished.get()
            pending.discard(done)
            refill()
            yield done.result()
    finally:
        for leftover in pending:
            leftover.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


RAMP_STEP = 512
RAMP_EVERY_S = 0.1


def done_keys(output: Path) -> set[tuple[int, int]]:
    """Keys already in an output file. A last line cut short by a kill is removed; lines that are
    not rollouts are set aside (:func:`ngym.rollout.output.scan_results`); every rollout is kept."""
    return scan_results(output).done


#: string fields longer than this are left out of what metrics keep of a rollout
SLIM_STR_MAX = 256


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """What metrics need of a rollout: its indices, agent, scalar fields and token usage (long
    strings left out: memory stays bounded by concurrency, not by the size of rows)."""
    out = {
        k: v for k, v in result.items()
        if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= SLIM_STR_MAX) or k == "agent_ref"
    }
    usage = (result.get("response") or {}).get("usage") if isinstance(result.get("response"), dict) else None
    if usage:
        out["response"] = {"usage": usage}
    return out


@dataclass(slots=True)
class CollectionReport:
    output: Path
    written: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    aborted: str | None = None
    #: failed attempts that were tried again (in the failures file with ``"retried": true``)
    retried: int = 0
    #: what a resume found in the output (lines set aside, rollouts re-indexed); empty if nothing
    resume_note: str = ""


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _write_error(path: Path, e: OSError) -> str:
    fix = "free some space" if e.errno == 28 else "fix the file or folder"
    return (f"could not write {path}: {e.strerror}. Every line written before is kept; {fix}, then re-run with "
            f"+resume=true")


def prepare_output(
    output: Path, *, resume: bool, current: Mapping[tuple[str, int], tuple[int, int]] | None = None
) -> tuple[set[tuple[int, int]], CollectionReport]:
    """Make ``output`` ready for a run: with ``resume``, keep the rollouts whose input is unchanged
    (:func:`ngym.rollout.output.scan_results`) and return their keys; otherwise empty it. The
    previous failures file becomes ``<out>_failures_previous.jsonl``. (Used by :func:`collect` and
    by the driver of a sharded collection, :mod:`ngym.rollout.shards`.)"""
    output.parent.mkdir(parents=True, exist_ok=True)
    failures_path = sibling(output, "_failures.jsonl")
    report = CollectionReport(output=output)
    if resume:
        scan = scan_results(output, current)
        done = scan.done
        report.resume_note = scan.summary(output)
        report.results = [slim(row) for row in iter_rows(output)] if output.exists() else []
    else:
        done = set()
        output.write_bytes(b"")
    if failures_path.exists():  # kept until this run has read everything it needs
        failures_path.replace(sibling(output, "_failures_previous.jsonl"))
    report.skipped = len(done)
    return done, report


async def collect(
    client: ServerClient,
    tasks: Iterable[Task],
    output: Path,
    *,
    total: int | None = None,
    concurrency: int = 256,
    max_attempts: int = 3,
    deadline_s: float = 3600.0,
    max_consecutive_failures: int = 32,
    resume: bool = False,
    progress: bool = True,
    current: Mapping[tuple[str, int], tuple[int, int]] | None = None,
    ramp_step: int | None = None,
) -> CollectionReport:
    """Run every task not yet in ``output``; append results and failures as they complete.

    The caller owns the output (:class:`ngym.rollout.output.OutputLock`, ``check_output``).
    ``resume``: keep the rollouts already there whose input is unchanged (``current``: the
    fingerprints of the tasks about to run, see :func:`task_keys`) and run the rest; otherwise the
    output is emptied. The previous failures file is kept as ``<out>_failures_previous.jsonl``.
    Stops early (``report.aborted`` says why) after ``max_consecutive_failures`` infrastructure
    failures in a row (dead model or resources server), or when the output cannot be written:
    completed rollouts are kept, and ``resume=True`` later runs only what is missing."""
    import time

    from tqdm import tqdm

    done, report = prepare_output(output, resume=resume, current=current)
    failures_path = sibling(output, "_failures.jsonl")
    todo = (t for t in tasks if t.key not in done)
    t0 = time.monotonic()
    streak = 0
    per_agent: dict[str, int] = {}  # completed per agent, shown on the bar
    bar = tqdm(total=total, initial=report.skipped, desc="rollouts", unit="rollout", disable=not progress, dynamic_ncols=True)
    out = _open_append(output)
    failures_out: int | None = None
    try:
        with bar:
            async for outcome in run_tasks(client, todo, concurrency, max_attempts, deadline_s, ramp_step):
                if outcome.retried:
                    report.retried += len(outcome.retried)
                    try:
                        if failures_out is None:
                            failures_out = _open_append(failures_path)
                        append_line(failures_out, b"".join(orjson.dumps(r) + b"\n" for r in outcome.retried))
                    except OSError as e:
                        report.aborted = _write_error(failures_path, e)
                        break
                if outcome.result is not None:
                    try:
                        append_line(out, orjson.dumps(outcome.result) + b"\n")
                    except OSError as e:
                        report.aborted = _write_error(output, e)
                        break
                    report.written += 1
                    report.results.append(slim(outcome.result))
                    streak = 0
                else:
                    failure = outcome.failure
                    assert failure is not None
                    report.failures.append(failure)
                    try:
                        if failures_out is None:
                            failures_out = _open_append(failures_path)
                        append_line(failures_out, orjson.dumps(failure) + b"\n")
                    except OSError as e:
                        report.aborted = _write_error(failures_path, e)
                        break
                    streak = streak + 1 if failure["kind"] in INFRA_KINDS else 0
                    if streak >= max_consecutive_failures:
                        report.aborted = (
                            f"stopped after {streak} rollouts in a row failed with infrastructure errors; the last: "
                            f"[{failure['kind']}] {failure['error']}"
                        )
                        break
                agent = ((outcome.result or outcome.failure or {}).get("agent_ref") or {}).get("name", "?")
                per_agent[agent] = per_agent.get(agent, 0) + 1
                bar.set_postfix_str(
                    ", ".join(f"{name.removesuffix('_simple_agent')} {n}" for name, n in per_agent.items())
                    + (f", failed {len(report.failures)}" if report.failures else ""),
                    refresh=False,
                )
                bar.update(1)
    finally:
        os.close(out)
        if failures_out is not None:
            os.close(failures_out)
    report.seconds = time.monotonic() - t0
    return report
