"""The collector's output file: who may write it, what it already holds, and how lines reach it.

* **One writer.** :class:`OutputLock` takes an OS-level lock (``flock``) on ``<out>.lock``; the
  kernel releases it when the holder exits, however it exits. A second writer is refused with the
  first one's pid and command line.
* **Nothing is destroyed by accident.** :func:`check_output` refuses an output that is the input
  (or any file the collector writes), a directory, an unwritable place, and a non-empty output
  without ``+resume=true`` or ``+overwrite=true``.
* **A bad line is set aside, never fatal, never dropped.** :func:`scan_results` reads a results
  file once: lines that are not rollouts (corrupt JSON, no indices), duplicates, and rollouts of
  inputs that changed since they ran are moved to ``<out>_set_aside.jsonl`` with their line number
  and reason; the rest is kept in place (re-indexed when their row moved).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ngym.errors import OutputError

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"
#: fingerprint of the materialized input row a rollout was run from (see ``collect.fingerprint``)
INPUT_FP = "_ng_input_fp"
#: marks a line of ``<out>_failures.jsonl`` that records a failed attempt which was tried again
#: (e.g. ``replica_lost``): recorded, not a failed rollout, never scored
RETRIED = "retried"
#: files the collector writes next to ``<out>.jsonl``
SIBLINGS = (
    "_materialized_inputs.jsonl", "_failures.jsonl", "_failures_previous.jsonl", "_set_aside.jsonl",
    "_agent_metrics.json", "_reward_profiling.jsonl", "_aggregate_metrics.json",
)


def is_retried(row: Any) -> bool:
    """A failures-file line that records an attempt tried again, not a failed rollout: readers that
    count failures skip it."""
    return isinstance(row, dict) and row.get(RETRIED) is True


def sibling(output: Path, suffix: str) -> Path:
    """``results/out.jsonl`` -> ``results/out<suffix>``."""
    return output.with_name(output.stem + suffix)


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


class OutputLock:
    """Exclusive, OS-level ownership of an output file for the life of one run.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with OutputLock(d / "out.jsonl"):
    ...     OutputLock(d / "out.jsonl").acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ngym.errors.OutputError: ... is being written by pid ...
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path(output)
        self._handle: IO[str] | None = None

    def acquire(self) -> OutputLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as e:
            raise OutputError(
                f"Cannot write next to the output {str(self.output)!r}: {e.strerror} ({self.path}). "
                f"Choose another +output_jsonl_fpath in a folder you can write."
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                who = json.loads(holder)
                named = f"pid {who['pid']} ({who['command']}, since {who['started']})"
            except (ValueError, KeyError, TypeError):
                named = "another process"
            raise OutputError(
                f"{self.output} is being written by {named}. Two runs must not write one output: wait for it to "
                f"finish (or stop it), or choose another +output_jsonl_fpath."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the lock
            self._handle = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def check_output(input_path: Path, output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, every way a run could destroy data or fail late."""
    if resume and overwrite:
        raise OutputError("+resume=true keeps the output and +overwrite=true replaces it: pass one of them.")
    written = [output, *(sibling(output, s) for s in SIBLINGS), lock_path(output)]
    clash = next((w for w in written if _same(input_path, w)), None)
    if clash is not None:
        raise OutputError(
            f"The input {str(input_path)!r} is also a file this run writes ({clash}): it would be overwritten. "
            f"Choose another +output_jsonl_fpath."
        )
    if output.is_dir():
        raise OutputError(f"+output_jsonl_fpath={str(output)!r} is a directory. Name a file, e.g. {output}/rollouts.jsonl.")
    if output.exists() and not os.access(output, os.W_OK):
        raise OutputError(f"The output {str(output)!r} is not writable. Fix its permissions or choose another file.")
    if not resume and not overwrite and output.is_file() and output.stat().st_size > 0:
        raise OutputError(
            f"The output {str(output)!r} already holds {_line_count(output):,} line(s); nothing was changed. "
            f"Pass +resume=true to keep them and run only what is missing, or +overwrite=true to replace them "
            f"(or choose another +output_jsonl_fpath)."
        )


def append_line(fd: int, data: bytes) -> None:
    """Write one whole line with as few system calls as possible; raise :class:`OSError` (e.g. a full
    disk) as is. A line cut short this way is what a resume cuts back."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cut_partial_line(output: Path) -> None:
    """A last line without its newline (a kill or a full disk mid-write) is removed."""
    with output.open("r+b") as f:
        size = f.seek(0, 2)
        if not size:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            cut = f.read(step).rfind(b"\n")
            if cut >= 0:
                pos = pos - step + cut + 1
                break
            pos -= step
        f.truncate(pos)


@dataclass(slots=True)
class SetAside:
    line: int
    reason: str
    text: str


@dataclass(slots=True)
class ResultsScan:
    """What a results file holds, after bad and stale lines were set aside."""

    done: set[tuple[int, int]] = field(default_factory=set)
    set_aside: list[SetAside] = field(default_factory=list)
    reindexed: int = 0
    kept: int = 0
    #: kept lines carry no fingerprint (written by an older version): trusted by their keys
    unfingerprinted: int = 0

    def summary(self, output: Path) -> str:
        if not self.set_aside and not self.reindexed:
            return ""
        parts = []
        if self.set_aside:
            by_reason: dict[str, list[int]] = {}
            for s in self.set_aside:
                by_reason.setdefault(s.reason, []).append(s.line)
            for reason, lines in by_reason.items():
                shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
                parts.append(f"{len(lines)} line(s) {reason} (line {shown})")
            parts.append(f"set aside in {sibling(output, '_set_aside.jsonl')}; their rollouts run again")
        if self.reindexed:
            parts.append(f"{self.reindexed} rollout(s) of rows that moved in the input kept under their new task index")
        return f"{output}: " + "; ".join(parts) + "."


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\n")


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "are not valid JSON"
    if not isinstance(row, dict):
        return None, "are not JSON objects"
    try:
        int(row[TASK_INDEX]), int(row[ROLLOUT_INDEX])
    except (KeyError, TypeError, ValueError):
        return None, f"have no integer {TASK_INDEX}/{ROLLOUT_INDEX}"
    return row, ""


def scan_results(output: Path, current: Mapping[tuple[str, int], tuple[int, int]] | None = None) -> ResultsScan:
    """Read ``output``; keep each rollout whose input is still there, set the rest aside.

    ``current`` maps (input fingerprint, rollout index) -> (task index, rollout index) for the run
    about to start; a rollout whose fingerprint is not in it was run from a row that changed or
    is gone. Without ``current``, keys are trusted. The file is rewritten only if a line moves."""
    scan = ResultsScan()
    if not output.is_file():
        return scan
    cut_partial_line(output)
    rewrite: list[tuple[int, bytes | None]] = []  # (line number, new text or None to drop)
    with output.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            row, problem = _parse(raw)
            if row is None:
                scan.set_aside.append(SetAside(lineno, problem, _text(raw)))
                rewrite.append((lineno, None))
                continue
            key = (int(row[TASK_INDEX]), int(row[ROLLOUT_INDEX]))
            fp = row.get(INPUT_FP)
            moved: bytes | None = None
            if current is not None and isinstance(fp, str):
                new_key = current.get((fp, key[1]))
                if new_key is None:
                    scan.set_aside.append(SetAside(lineno, "were run from input rows that changed or are gone", _text(raw)))
                    rewrite.append((lineno, None))
                    continue
                if new_key != key:
                    key = new_key
                    row[TASK_INDEX], row[ROLLOUT_INDEX] = new_key
                    moved = orjson.dumps(row) + b"\n"
            elif not isinstance(fp, str):
                scan.unfingerprinted += 1
            if key in scan.done:
                scan.set_aside.append(SetAside(lineno, "repeat a rollout already in the file", _text(raw)))
                rewrite.append((lineno, None))
                continue
            if moved is not None:
                rewrite.append((lineno, moved))
                scan.reindexed += 1
            scan.done.add(key)
            scan.kept += 1
    if rewrite:
        _rewrite(output, dict(rewrite), scan.set_aside)
    return scan


def _rewrite(output: Path, changes: dict[int, bytes | None], set_aside: list[SetAside]) -> None:
    """Set lines aside first (appended, flushed), then replace the output atomically."""
    if set_aside:
        with sibling(output, "_set_aside.jsonl").open("ab") as f:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            for s in set_aside:
                f.write(orjson.dumps({"line": s.line, "reason": s.reason, "set_aside_at": stamp, "text": s.text}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    tmp = output.with_name(output.name + ".rewrite")
    with output.open("rb") as src, tmp.open("wb") as dst:
        for lineno, raw in enumerate(src, start=1):
            if lineno in changes:
                new = changes[lineno]
                if new is not None:
                    dst.write(new)
            else:
                dst.write(raw)
        dst.flush()
        os.fsync(dst.fileno())
    tmp.replace(output)


def iter_rows(output: Path) -> Iterator[dict[str, Any]]:
    """The rows of a results file :func:`scan_results` has cleaned."""
    with output.open("rb") as f:
        for raw in f:
            if raw.strip():
                yield orjson.loads(raw)


def keys_of(tasks: Iterable[tuple[str, tuple[int, int]]]) -> dict[tuple[str, int], tuple[int, int]]:
    """(fingerprint, (task, rollout)) pairs -> the lookup :func:`scan_results` takes."""
    return {(fp, key[1]): key for fp, key in tasks}
