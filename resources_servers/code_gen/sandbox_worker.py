"""Sandbox worker: runs the untrusted program inside the sandbox (see sandbox_launcher.py).

Standard library only; copied into the sandbox's private dir and run as ``python -I -S -B worker.py``.
Reads one job (JSON) on stdin and writes one JSON line per test on its original stdout:

* ``call``: import the code once (``__name__ = "solution"``), find ``fn_name`` (on ``Solution()`` when
  the code defines ``class Solution``, LiveCodeBench's convention), call it with each input's JSON
  lines as arguments, report the JSON of the return value (tuples become lists).
* ``stdio``: run the code as ``__main__`` in a forked child per test, stdin = the test's input,
  report what it wrote on stdout and its exit status.

The worker never sees the expected outputs: it only reports what the program did, and the grader
outside the sandbox compares. A program that prints "passed", exits early, kills this worker or
writes records of its own gains nothing it could not get by computing the right answers.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import select
import signal
import sys
import traceback
from typing import Any, NoReturn

OUT = os.dup(1)


def emit(record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    while data:
        data = data[os.write(OUT, data):]


class Timeout(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Timeout()


def run_call(job: dict[str, Any]) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    code = job["code"]
    namespace: dict[str, Any] = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(code, "<solution>", "exec"), namespace)
        target = namespace["Solution"]() if "class Solution" in code and "Solution" in namespace else None
        fn = getattr(target, job["fn_name"]) if target is not None else namespace[job["fn_name"]]
    except BaseException as e:
        message = "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]
        for i in range(len(job["inputs"])):
            emit({"i": i, "status": "error", "error": "cannot load the solution: " + message})
        return
    signal.signal(signal.SIGALRM, _alarm)
    for i, text in enumerate(job["inputs"]):
        try:
            args = [json.loads(line) for line in text.split("\n")] if text.strip() else []
        except ValueError as e:
            emit({"i": i, "status": "error", "error": f"test input is not JSON lines: {e}"})
            continue
        signal.setitimer(signal.ITIMER_REAL, job["per_test_timeout"])
        try:
            value = fn(*args)
            signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(value, tuple):
                value = list(value)
            emit({"i": i, "status": "ok", "value": json.dumps(value)})
        except Timeout:
            emit({"i": i, "status": "timeout", "error": "time limit exceeded"})
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            message = "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]
            emit({"i": i, "status": "error", "error": message})


def _child(code: str, stdin_fd: int, stdout_fd: int, stderr_fd: int) -> NoReturn:
    os.dup2(stdin_fd, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.closerange(3, 1 << 16)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    status = 0
    try:
        exec(compile(code, "<solution>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 1
    os._exit(status & 0xFF)


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name)
    while data:
        data = data[os.write(fd, data):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read(fd: int, limit: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 16, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def run_stdio(job: dict[str, Any]) -> None:
    limit = job["max_output"]
    for i, text in enumerate(job["inputs"]):
        fin, fout, ferr = _memfd("in", text.encode()), _memfd("out"), _memfd("err")
        pid = os.fork()
        if pid == 0:
            _child(job["code"], fin, fout, ferr)
        pidfd = os.pidfd_open(pid)
        ready, _, _ = select.select([pidfd], [], [], job["per_test_timeout"])
        timed_out = not ready
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        record: dict[str, Any] = {"i": i, "stdout": _read(fout, limit)}
        if job.get("stderr"):
            record["stderr"] = _read(ferr, limit)
        if timed_out:
            record.update(status="timeout", error="time limit exceeded")
        elif os.WIFSIGNALED(status):
            record.update(status="error", error=f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}")
        else:
            code = os.WEXITSTATUS(status)
            record.update(status="ok" if code == 0 else "error", exit_code=code)
            if code:
                record["error"] = f"exit status {code}: " + _read(ferr, 2000)[-1000:]
        for fd in (fin, fout, ferr):
            os.close(fd)
        emit(record)


def _site_exit(code: object = None) -> NoReturn:
    raise SystemExit(code)


def main() -> None:
    if not hasattr(builtins, "exit"):  # -S skips site, which defines exit() and quit(); programs use them
        setattr(builtins, "exit", _site_exit)
        setattr(builtins, "quit", _site_exit)
    job = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    if job["mode"] == "call":
        run_call(job)
    else:
        run_stdio(job)
    emit({"done": True})


main()
