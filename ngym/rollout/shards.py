"""Sharded collection: one input, K collector workers, one output.

``ng_collect_rollouts +num_shards=K`` is a driver and K workers. The driver owns the output
(its lock, its checks, its resume); each worker is an ordinary collector writing an ordinary
output of its own, so nothing of the collector's logic is repeated here:

1. The driver materializes the input once (``<out>_materialized_inputs.jsonl``) and prepares the
   output as a one-process run does (:func:`ngym.rollout.collect.prepare_output`: with
   ``+resume=true`` the rollouts whose input is unchanged are kept, by content fingerprint).
2. :func:`split` deals the tasks still to run to the shards, in input order, the i-th task to
   shard ``i mod K`` (deterministic; a resume deals only what is missing): shard ``i`` gets
   ``<out>_shards/shard-<i>_materialized_inputs.jsonl``.
3. Each shard runs :func:`ngym.rollout.collect.collect` into ``<out>_shards/shard-<i>.jsonl``
   (its own lock, failures file, flushed line by line) against running servers, or, in one-shot
   mode, against servers it starts and hosts itself (``+colocate=true``: in its own process, so K
   shards use K cores). :class:`ShardSpec` is everything a shard needs; ``run_shard`` in
   :mod:`ngym.cli.collect_shard` runs one in the calling process (the hook for a remote runner,
   e.g. a Ray task); :func:`run_local` runs them as child processes of the driver.
4. :func:`fold_shards` appends each shard's rollouts to the output and its failures to the
   output's failures file, then removes the shard's files. The driver folds at the end of a run,
   after Ctrl-C, after a shard died, and, at the start of the next run, whatever a killed driver
   left. A resume then reads the output as it reads any output (a half-written last line is cut;
   a line folded twice by a driver killed mid-fold is a repeat, set aside).

So every (task, rollout) is in the output once, whichever process died: a shard's completed
rollouts are in its file until folded, and a rerun with ``+resume=true`` runs only the rest.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ngym.rollout.collect import is_retried, slim
from ngym.rollout.output import OutputLock, ROLLOUT_INDEX, TASK_INDEX, append_line, cut_partial_line, sibling

#: the pid of the driver, in a worker's environment: the worker ends when the driver dies
DRIVER_ENV = "NGYM_SHARD_DRIVER_PID"
#: the module a local worker runs (``python -m``), reading its :class:`ShardSpec` (JSON) on stdin
WORKER_MODULE = "ngym.cli.collect_shard"


class ShardSpec(BaseModel):
    """Everything one shard needs; JSON-serialisable, so a shard can run in another process or on
    another machine (paths must then be on a shared file system)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    #: this shard's tasks, materialized (see :func:`ngym.rollout.collect.materialize`)
    inputs: str
    #: this shard's output: an ordinary collector output (lock, failures file), folded by the driver
    output: str
    #: the user's input file, named in messages
    input_jsonl_fpath: str
    #: the directory the shard runs in (a one-shot config's relative paths), if not the caller's
    cwd: str | None = None
    #: every task of the run, materialized: checked against the environments' task schemas before
    #: this shard sends anything (one-shot mode, where only the shards have servers)
    check_inputs: str | None = None
    #: against running servers: the head server (``host``, ``port``)
    head_server: dict[str, Any] | None = None
    #: one-shot: the deployment's config (YAML) this shard starts and stops itself
    config_yaml: str | None = None
    #: one-shot: the ports this shard's servers may take (shards never race for a port)
    port_range: tuple[int, int] | None = None
    concurrency: int = Field(256, ge=1)
    max_attempts: int = Field(3, ge=1)
    deadline_s: float = Field(3600.0, gt=0)
    max_consecutive_failures: int = Field(32, ge=1)
    startup_timeout_s: float = Field(180.0, gt=0)


class ShardResult(BaseModel):
    """What a shard reports when it ends by itself (``<shard>_result.json``)."""

    index: int
    written: int = 0
    failed: int = 0
    retried: int = 0
    #: the shard's collection (its servers started): seconds, and when it ended (epoch seconds)
    seconds: float = 0.0
    ended_at: float = 0.0
    #: why it stopped early (a dead server, a full disk), as the collector says it
    aborted: str | None = None
    #: an error before anything was sent (bad rows for an environment's task schema, a server
    #: that did not start), and its class in :mod:`ngym.errors`
    error: str | None = None
    error_type: str = "NgymError"


def shards_dir(output: Path) -> Path:
    """``results/out.jsonl`` -> ``results/out_shards/``."""
    return sibling(output, "_shards")


def shard_output(output: Path, index: int) -> Path:
    return shards_dir(output) / f"shard-{index}.jsonl"


def result_path(shard_out: Path) -> Path:
    return sibling(shard_out, "_result.json")


def split(materialized: Path, output: Path, done: set[tuple[int, int]], count: int) -> list[tuple[Path, int]]:
    """Deal the tasks of ``materialized`` not in ``done`` to ``count`` shards: the i-th of them (in
    input order) to shard ``i mod count``. Writes each shard's materialized inputs; returns
    (its path, its number of tasks) per shard."""
    folder = shards_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [sibling(shard_output(output, i), "_materialized_inputs.jsonl") for i in range(count)]
    counts = [0] * count
    files = [p.open("wb") for p in paths]
    try:
        position = 0
        with materialized.open("rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                row = orjson.loads(raw)
                if (int(row[TASK_INDEX]), int(row[ROLLOUT_INDEX])) in done:
                    continue
                shard = position % count
                files[shard].write(raw if raw.endswith(b"\n") else raw + b"\n")
                counts[shard] += 1
                position += 1
    finally:
        for handle in files:
            handle.close()
    return list(zip(paths, counts, strict=True))


@dataclass(slots=True)
class Folded:
    """What :func:`fold_shards` moved into the output."""

    written: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    retried: int = 0
    shards: int = 0


def fold_shards(output: Path, *, keep_results: bool = True) -> Folded:
    """Append every shard's rollouts under ``<out>_shards/`` to ``output`` and its failures to
    ``<out>_failures.jsonl``, then remove the shards' files. The caller owns ``output``; each
    shard's own lock is taken first, so a worker still writing is refused, never read half-way
    (:class:`ngym.errors.OutputError` naming it). ``keep_results``: keep what metrics need of each
    rollout (:func:`ngym.rollout.collect.slim`)."""
    folded = Folded()
    folder = shards_dir(output)
    if not folder.is_dir():
        return folded
    outputs = sorted(
        (p for p in folder.glob("shard-*.jsonl") if p.stem.removeprefix("shard-").isdigit()),
        key=lambda p: int(p.stem.removeprefix("shard-")),
    )
    locks = [OutputLock(p).acquire() for p in outputs]
    try:
        failures_path = sibling(output, "_failures.jsonl")
        for shard_out in outputs:
            folded.shards += 1
            if shard_out.stat().st_size:
                cut_partial_line(shard_out)
                folded.written += _append_file(shard_out, output, folded.results if keep_results else None, slim_rows=True)
            shard_failures = sibling(shard_out, "_failures.jsonl")
            if shard_failures.is_file() and shard_failures.stat().st_size:
                cut_partial_line(shard_failures)
                rows: list[dict[str, Any]] = []
                _append_file(shard_failures, failures_path, rows, slim_rows=False)
                for row in rows:
                    if is_retried(row):
                        folded.retried += 1
                    else:
                        folded.failures.append(row)
            # folded: this shard's lines must not be appended again
            shard_out.unlink()
            shard_failures.unlink(missing_ok=True)
    finally:
        for lock in locks:
            lock.release()
    shutil.rmtree(folder, ignore_errors=True)
    return folded


def _append_file(source: Path, target: Path, rows: list[dict[str, Any]] | None, *, slim_rows: bool) -> int:
    """Append ``source``'s lines to ``target`` (flushed to disk); parse them into ``rows`` when
    given (``slim_rows``: only what metrics need of a rollout). Returns the number of lines."""
    count = 0
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with source.open("rb") as f:
            chunk: list[bytes] = []
            for raw in f:
                if not raw.strip():
                    continue
                chunk.append(raw)
                count += 1
                if rows is not None:
                    try:
                        row = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        row = None
                    if isinstance(row, dict):
                        rows.append(slim(row) if slim_rows else row)
                if len(chunk) >= 512:
                    append_line(fd, b"".join(chunk))
                    chunk = []
            if chunk:
                append_line(fd, b"".join(chunk))
        os.fsync(fd)
    finally:
        os.close(fd)
    return count


def port_ranges(low: int, high: int, count: int) -> list[tuple[int, int]]:
    """``count`` disjoint slices of the port range [low, high], one per shard."""
    span = (high - low + 1) // count
    if span < 16:
        from ngym.errors import ConfigError

        raise ConfigError(
            f"port_range_low={low}..port_range_high={high} is too narrow for {count} shards (each needs at least 16 "
            f"ports to start its servers); widen the range or lower +num_shards."
        )
    return [(low + i * span, low + (i + 1) * span - 1) for i in range(count)]


def shard_concurrency(total: int, count: int) -> int:
    """Each shard's share of ``+num_samples_in_parallel`` (the total across shards)."""
    return max(1, math.ceil(total / count))


# ---- running the shards ----------------------------------------------------------------------------


@dataclass
class ShardRun:
    """A running shard, and what the driver has seen of its files. Subclasses say where it runs:
    :class:`LocalShard` (a child process), a Ray task (``ngym.cli.collect_shard.RayShard``)."""

    spec: ShardSpec
    written: int = 0
    failed: int = 0
    _offsets: dict[str, int] = field(default_factory=dict)

    def running(self) -> bool:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Ask the shard to stop and keep what it completed (Ctrl-C)."""
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def wait(self, timeout_s: float) -> bool:
        """Wait until it has ended; whether it has."""
        deadline = time.monotonic() + timeout_s
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def finished(self) -> bool:
        """It ended by itself with its result written (its share done, or stopped with a reason)."""
        raise NotImplementedError

    def how_it_ended(self) -> str:
        """``(pid 4242) was killed by SIGKILL``: for a shard that did not finish."""
        raise NotImplementedError

    @property
    def output(self) -> Path:
        return Path(self.spec.output)

    def poll_counts(self) -> None:
        """Count the lines the shard appended since the last poll (rollouts, failures)."""
        self.written += self._new_lines(self.output, None)
        failed: list[bytes] = []
        self._new_lines(sibling(self.output, "_failures.jsonl"), failed)
        self.failed += sum(1 for raw in failed if not _is_retried_line(raw))

    def _new_lines(self, path: Path, keep: list[bytes] | None) -> int:
        start = self._offsets.get(path.name, 0)
        try:
            with path.open("rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return 0
        end = data.rfind(b"\n") + 1
        if not end:
            return 0
        self._offsets[path.name] = start + end
        if keep is not None:
            keep.extend(data[:end].splitlines())
        return data.count(b"\n", 0, end)

    def result(self) -> ShardResult | None:
        path = result_path(self.output)
        try:
            return ShardResult.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None


def _is_retried_line(raw: bytes) -> bool:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(row, dict) and is_retried(row)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by {name}"
    return f"exited with code {code}"


class ChildProcess(Protocol):
    """What the driver needs of a shard's process (:class:`subprocess.Popen` or :class:`Forked`)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


class Forked:
    """A shard forked from the driver (``os.fork``): it starts with the driver's modules imported,
    so it costs no interpreter start-up and no imports (~1.3 s of CPU per shard otherwise)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # reaped elsewhere: gone, how is unknown
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"shard pid {self.pid}", timeout or 0)
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class LocalShard(ShardRun):
    """A shard as a child process of the driver (forked, or ``python -m ngym.cli.collect_shard``)."""

    process: ChildProcess | None = None

    @property
    def proc(self) -> ChildProcess:
        assert self.process is not None
        return self.process

    def running(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        if self.running():
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def finished(self) -> bool:
        return self.result() is not None and self.proc.returncode in (0, 1, 2)

    def how_it_ended(self) -> str:
        return f"(pid {self.proc.pid}) {describe_exit(self.proc.returncode)}"


def start_local(spec: ShardSpec, env: dict[str, str] | None = None) -> LocalShard:
    """Start one shard as a new interpreter (``python -m``; its own session: the driver forwards Ctrl-C once)."""
    child_env = {**(env if env is not None else os.environ), DRIVER_ENV: str(os.getpid())}
    process = subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE],
        stdin=subprocess.PIPE,
        env=child_env,
        start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(spec.model_dump_json().encode())
    process.stdin.close()
    return LocalShard(spec, process=process)


def fork_local(spec: ShardSpec, target: Callable[[ShardSpec], int]) -> LocalShard:
    """Start one shard as a fork of this process running ``target(spec)`` (its exit code), in its
    own session. Call it while this process runs no other thread and no event loop."""
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the shard: never returns into the driver's code
        code = 1
        try:
            os.setsid()
            os.environ[DRIVER_ENV] = str(parent)
            code = target(spec)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
            finally:
                os._exit(code)
    return LocalShard(spec, process=Forked(pid))


def run_local(
    specs: Sequence[ShardSpec], *, total: int | None, initial: int, progress: bool, out: IO[str] | None = None,
    grace_s: float = 60.0, target: Callable[[ShardSpec], int] | None = None,
) -> list[ShardRun]:
    """Run ``specs`` as child processes of this one (see :func:`watch`): forks running ``target``
    where the platform forks, else new interpreters."""
    if target is not None and hasattr(os, "fork"):
        runs: list[ShardRun] = [fork_local(spec, target) for spec in specs]
    else:
        runs = [start_local(spec) for spec in specs]
    return watch(runs, total=total, initial=initial, progress=progress, out=out, grace_s=grace_s)


def watch(
    runs: list[ShardRun], *, total: int | None, initial: int, progress: bool, out: IO[str] | None = None,
    grace_s: float = 60.0,
) -> list[ShardRun]:
    """Wait until every shard of ``runs`` has ended; show the total across shards on one bar.
    Ctrl-C (or SIGTERM) is passed on to every shard, which stops and keeps what it completed
    (waiting ``grace_s`` for them, then killing what is left); the interrupt is then raised again."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc="rollouts", unit="rollout", disable=not progress, dynamic_ncols=True,
               file=out or sys.stderr)
    shown = 0
    try:
        with bar:
            while True:
                alive = [r for r in runs if r.running()]
                for r in runs:
                    r.poll_counts()
                count = sum(r.written + r.failed for r in runs)
                if count != shown:
                    bar.update(count - shown)
                    shown = count
                    failed = sum(r.failed for r in runs)
                    bar.set_postfix_str(
                        ", ".join(f"shard {r.spec.index} {r.written + r.failed}" for r in runs)
                        + (f", failed {failed}" if failed else ""),
                        refresh=False,
                    )
                if not alive:
                    break
                time.sleep(0.2)
    except KeyboardInterrupt:
        stop(runs, grace_s)
        raise
    return runs


def stop(runs: Iterable[ShardRun], grace_s: float) -> None:
    """Interrupt every live shard; kill those still running after ``grace_s``."""
    runs = list(runs)
    for r in runs:
        r.interrupt()
    deadline = time.monotonic() + grace_s
    for r in runs:
        if not r.wait(max(0.1, deadline - time.monotonic())):
            r.kill()
