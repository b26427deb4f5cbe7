"""bench/scale_out.py drives the real commands (tiny sizes; the figures are not checked, what the
commands wrote is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*args: str, out: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "bench/scale_out.py", *args, "--runs", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_shards_and_replicas_through_the_commands(tmp_path: Path) -> None:
    records = run("shards", "--rollouts", "12", "--concurrency", "4", out=tmp_path / "s.jsonl")
    records += run("replicas", "--replicas", "1,2", "--rollouts", "12", "--concurrency", "4", "--delay-s", "0.01",
                   out=tmp_path / "r.jsonl")
    assert [(r["experiment"], r.get("shards"), r.get("replicas")) for r in records] == [
        ("shards", 1, None), ("shards", 2, None), ("replicas", None, 1), ("replicas", None, 2)]
    for r in records:
        assert r["exit_code"] == 0 and r["written"] == 12 and r["failures"] == 0 and r["mean_reward"] == 1.0, r
        assert r["rollouts_per_s"] > 0 and r["cpu_ms_per_rollout"] > 0
