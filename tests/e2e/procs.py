"""Real processes for end-to-end tests: ng_run in the background."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import command_env


class NgRun:
    """``ng_run`` in the background, its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        port = next((a.split("=")[1] for a in args if a.startswith("+head_server.port=")), "11000")
        self.head_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            ["ng_run", *args], cwd=cwd, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "servers ready" in line:
                self.ready.set()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.2):
            assert self.proc.poll() is None, "ng_run exited:\n" + "".join(self.lines)
            assert time.monotonic() < deadline, "ng_run not ready:\n" + "".join(self.lines)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


