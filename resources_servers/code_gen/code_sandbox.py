"""Run untrusted Python in a sandbox, from the grader's side (blocking; call it off the event loop).

One run = one launcher process (``sandbox_launcher.py``) that isolates itself and executes the worker
(``sandbox_worker.py``) as an unprivileged user. Layers, strongest first where the OS allows:

* **namespaces** (root, Linux): new network namespace (no network at all), PID namespace (the
  program sees only its own processes; all die with it), mount namespace with a fresh ``/proc``, a
  size-limited tmpfs ``/tmp`` as the private work dir (gone when the run ends), and the hidden paths
  (this environment's data, the project) covered by empty tmpfs;
* **unprivileged uid**: a uid of its own per concurrent run (``uid_base + slot``), so the process
  limit counts only this run's processes and the clean-up can kill every process of that uid;
* **resource limits**: CPU seconds, address space, file size, processes, open files, no core dumps;
* **wall-clock deadline** and an output cap, enforced here: on expiry the whole run is killed.

Where namespaces are unavailable (not root, a container without CAP_SYS_ADMIN) ``isolation="auto"``
falls back to ``rlimits``: limits, the deadline, a private temp dir removed afterwards, and the uid
change when root. There is then **no network isolation and the data files stay readable**; the
verify response says which isolation was used (``sandbox``), and ``isolation="namespaces"`` makes
that fallback an error instead.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "sandbox_launcher.py"
EXIT_NO_NAMESPACES = 97
#: directories hidden from the program by default (where projects, data and home directories live,
#: and this project's own checkout wherever it lies); one that holds the interpreter is left visible
DEFAULT_HIDDEN = ("/home", "/root", "/work", "/srv", "/mnt", "/media", "/opt", "/var", "/data",
                  str(HERE.parents[1]))
Isolation = Literal["namespaces", "rlimits"]


class SandboxError(Exception):
    """The sandbox itself could not run (not the program's fault): never a reward."""


class SandboxLimits(BaseModel):
    """Resource limits of one run (the program and every process it starts)."""

    cpu_s: int = Field(10, ge=1, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=64, description="address space in MiB (RLIMIT_AS)")
    file_size_mb: int = Field(16, ge=1, description="largest file it may write, MiB (RLIMIT_FSIZE)")
    processes: int = Field(32, ge=4, description="processes of the run's uid (RLIMIT_NPROC)")
    open_files: int = Field(64, ge=16, description="open file descriptors (RLIMIT_NOFILE)")
    tmpfs_mb: int = Field(64, ge=1, description="size of the private /tmp (namespaces only)")


class SandboxConfig(BaseModel):
    isolation: Literal["auto", "namespaces", "rlimits"] = Field(
        "auto", description="auto: namespaces where the OS allows, else rlimits; namespaces: required"
    )
    python: str | None = Field(
        None, description="interpreter that runs the program (default /usr/bin/python3 when sandboxed, "
                          "else this interpreter); the program gets its standard library only"
    )
    uid_base: int = Field(61000, ge=1000, description="first uid of the per-run uids (root only)")
    max_concurrent: int = Field(8, ge=1, le=1024, description="runs at once (each gets its own uid)")
    hide_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_HIDDEN),
                                  description="directories the program must not see (namespaces only)")
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    max_output_bytes: int = Field(1 << 20, ge=1024, description="stdout/stderr kept per test and per run")


@dataclass(slots=True)
class RunResult:
    """What one sandboxed run reported: records by test index, and how it ended."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False          # the worker reached its end
    timed_out: bool = False         # the wall-clock deadline killed it
    output_overflow: bool = False   # it wrote more than allowed
    exit_code: int | None = None
    stderr: str = ""
    isolation: Isolation = "rlimits"
    seconds: float = 0.0


class Sandbox:
    """Thread-safe: ``run`` may be called from many threads; at most ``max_concurrent`` run at once."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._slots = list(range(self.config.max_concurrent))
        self._lock = threading.Lock()
        self._free = threading.Semaphore(self.config.max_concurrent)
        self._root = os.geteuid() == 0
        self.isolation: Isolation = self._choose_isolation()

    # ---- isolation ---------------------------------------------------------------------------

    def _choose_isolation(self) -> Isolation:
        wanted = self.config.isolation
        if wanted == "rlimits":
            return "rlimits"
        reason = self._namespaces_unavailable()
        if reason is None:
            return "namespaces"
        if wanted == "namespaces":
            raise SandboxError(
                f"isolation: namespaces was asked for, but {reason}. Run the environment as root on Linux "
                f"(a container needs CAP_SYS_ADMIN), or set isolation: auto to accept rlimits only."
            )
        return "rlimits"

    def _namespaces_unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"the platform is {sys.platform}, not Linux"
        if not self._root:
            return "the server does not run as root (namespaces and the uid change need it)"
        if not Path(self._python("namespaces")).is_file():
            return f"the interpreter {self._python('namespaces')!r} does not exist"
        self.isolation = "namespaces"
        result = self.run({"mode": "stdio", "code": "print('ok')", "inputs": [""]}, deadline_s=30)
        if result.exit_code == EXIT_NO_NAMESPACES or result.records.get(0, {}).get("stdout") != "ok\n":
            return f"the kernel refused new namespaces ({result.stderr.strip()[-300:] or result.exit_code})"
        return None

    def _python(self, isolation: Isolation) -> str:
        if self.config.python:
            return self.config.python
        if self._root and Path("/usr/bin/python3").is_file():
            return "/usr/bin/python3"  # executable by the unprivileged uid (a venv under /root is not)
        return sys.executable

    # ---- one run -----------------------------------------------------------------------------

    def run(self, job: dict[str, Any], deadline_s: float) -> RunResult:
        """Run ``job`` (see sandbox_worker.py) within ``deadline_s`` wall-clock seconds."""
        job = {"per_test_timeout": 5.0, "max_output": self.config.max_output_bytes, **job}
        with self._free:
            with self._lock:
                slot = self._slots.pop()
            try:
                return self._run(job, deadline_s, slot)
            finally:
                with self._lock:
                    self._slots.append(slot)

    def _hidden(self) -> list[str]:
        python = os.path.realpath(self._python(self.isolation))
        hidden = []
        for p in self.config.hide_paths:
            path = os.path.realpath(p)
            if os.path.isdir(path) and not (python + os.sep).startswith(path.rstrip(os.sep) + os.sep):
                hidden.append(path)
        return sorted(set(hidden))

    def _settings(self, slot: int, workdir: str | None) -> dict[str, Any]:
        limits = self.config.limits
        uid = self.config.uid_base + slot if self._root else None
        return {
            "namespaces": self.isolation == "namespaces",
            "workdir": workdir,
            "uid": uid,
            "gid": uid,
            "python": self._python(self.isolation),
            "hide": self._hidden(),
            "tmpfs_mb": limits.tmpfs_mb,
            "limits": {
                "cpu_s": limits.cpu_s,
                "memory_bytes": limits.memory_mb << 20,
                "file_size_bytes": limits.file_size_mb << 20,
                "processes": limits.processes,
                "open_files": limits.open_files,
            },
        }

    def _run(self, job: dict[str, Any], deadline_s: float, slot: int) -> RunResult:
        result = RunResult(isolation=self.isolation)
        workdir = None if self.isolation == "namespaces" else tempfile.mkdtemp(prefix="ngym-sandbox-")
        settings = self._settings(slot, workdir)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(settings)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, close_fds=True, cwd="/",
            )
        except OSError as e:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            raise SandboxError(f"cannot start the sandbox launcher {LAUNCHER}: {e}") from e
        try:
            stdout, stderr = self._communicate(proc, json.dumps(job).encode(), start + deadline_s, result)
        finally:
            self._kill(proc, settings["uid"])
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        result.seconds = time.monotonic() - start
        result.exit_code = proc.returncode
        result.stderr = stderr.decode("utf-8", "replace")
        for line in stdout.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("done") is True:
                result.finished = True
            elif isinstance(record.get("i"), int) and record["i"] not in result.records:
                result.records[record["i"]] = record  # the first record of a test counts
        return result

    def _communicate(self, proc: subprocess.Popen[bytes], data: bytes, deadline: float,
                     result: RunResult) -> tuple[bytes, bytes]:
        assert proc.stdin and proc.stdout and proc.stderr
        cap = self.config.max_output_bytes * 4 + 65536
        out: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
        sizes = dict.fromkeys(out, 0)
        sel = selectors.DefaultSelector()
        view = memoryview(data)
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        try:
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    result.timed_out = True
                    break
                for key, _ in sel.select(remaining):
                    if key.fileobj is proc.stdin:
                        try:
                            sent = os.write(proc.stdin.fileno(), view[:65536])
                        except (BrokenPipeError, BlockingIOError) as e:
                            sent = len(view) if isinstance(e, BrokenPipeError) else 0
                        view = view[sent:]
                        if not view:
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    fd = key.fd
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    sizes[fd] += len(chunk)
                    if sizes[fd] > cap:
                        result.output_overflow = True
                        return b"".join(out[proc.stdout.fileno()]), b"".join(out[proc.stderr.fileno()])
                    out[fd].append(chunk)
            if not result.timed_out:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    result.timed_out = True
        finally:
            sel.close()
        return b"".join(out[proc.stdout.fileno()]), b"".join(out[proc.stderr.fileno()])

    def _kill(self, proc: subprocess.Popen[bytes], uid: int | None) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if uid is not None:  # every process of this run's uid, wherever it went (setsid, double fork)
            for _ in range(20):
                if not kill_uid(uid):
                    break
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe and not pipe.closed:
                pipe.close()


def kill_uid(uid: int) -> int:
    """SIGKILL every process whose real uid is ``uid``; the number signalled."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError, KeyError):
            continue
    return killed
