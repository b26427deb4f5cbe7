"""The benchmark commands of bench/README.md still run (tiny sizes; the figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, out: Path) -> list[dict]:
    done = subprocess.run([sys.executable, f"bench/{script}", *args, "--runs", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_overhead_in_process_and_colocated(tmp_path: Path) -> None:
    records = run("overhead.py", "--in-process", "--concurrency", "1", "8", "--rollouts", "16", out=tmp_path / "a.jsonl")
    records += run("overhead.py", "--colocate", "--concurrency", "4", "--rollouts", "16", out=tmp_path / "b.jsonl")
    assert [r["concurrency"] for r in records] == [1, 8, 4]
    for record in records:
        assert record["failures"] == 0 and record["rollouts"] == 16 and record["rollouts_per_s"] > 0
        assert record["cpu_ms_per_rollout_all"] > 0 and record["peak_rss_mb"] > 0


def test_floor(tmp_path: Path) -> None:
    (record,) = run("floor.py", "--stack", "asgi", "--concurrency", "4", "--rollouts", "20", out=tmp_path / "f.jsonl")
    assert record["label"] == "floor-asgi" and record["hops_per_rollout"] == 8 and record["rollouts_per_s"] > 0


def test_per_env_rows_takes_n_per_environment_in_blocks(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    rows = [{"agent_ref": {"name": f"{env}_simple_agent"}, "i": i} for i in range(4) for env in ("a", "b", "c")]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "blocks.jsonl"
    done = subprocess.run([sys.executable, "bench/per_env_rows.py", str(source), str(out), "--rows", "2", "--order", "c"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = [(json.loads(line)["agent_ref"]["name"][0], json.loads(line)["i"]) for line in out.read_text().splitlines()]
    assert got == [("c", 0), ("c", 1), ("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    wrong = subprocess.run([sys.executable, "bench/per_env_rows.py", str(source), str(out), "--order", "d"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "['d']" in wrong.stderr and "['a', 'b', 'c']" in wrong.stderr
