"""Helpers for end-to-end tests: real processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "sk-e2e-do-not-print-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(url)


def command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not a left-over process
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def scripted_api() -> Iterator[str]:
    """The stand-in for a remote OpenAI-compatible API, as a real process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ngym.devkit.testing.scripted_openai", "--port", str(port), "--api-key", SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def workdir(tmp_path: Path, scripted_api: str) -> Path:
    """A user's working directory: the example environments, results/, and env.yaml with the policy."""
    (tmp_path / "resources_servers").symlink_to(REPO / "resources_servers")
    (tmp_path / "responses_api_models").symlink_to(REPO / "responses_api_models")
    (tmp_path / "results").mkdir()
    (tmp_path / "env.yaml").write_text(
        f"policy_base_url: {scripted_api}\npolicy_api_key: {SECRET}\npolicy_model_name: scripted-gpt\n"
    )
    return tmp_path
