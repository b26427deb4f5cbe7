"""The lint and type gates: ``ruff check`` and ``mypy`` (configured in pyproject.toml, pinned in
the dev extra) pass on the package and the environments. Run by the test command, as CI runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ["ngym", "resources_servers", "responses_api_agents", "responses_api_models"]

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        __import__(args[0])
    except ImportError:
        pytest.fail(f"{args[0]} is not installed: pip install -e '.[dev]' (it pins the gate's version)")
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing() -> None:
    done = _run("ruff", "check", "--no-cache", *CHECKED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = _run("mypy", "--no-incremental", "--cache-dir=/dev/null", *CHECKED)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr
    assert "Success: no issues found" in done.stdout
