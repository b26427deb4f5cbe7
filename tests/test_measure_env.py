"""scripts/measure_env.py: the oracle/empty rows of an environment's measured table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env", ["mcqa", "structured_outputs"])
def test_oracle_scores_one_and_empty_zero_on_the_example_rows(env: str) -> None:
    rows = REPO / "resources_servers" / env / "data" / "example.jsonl"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "measure_env.py"), str(REPO / "resources_servers" / env), str(rows)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows"] == 5
    assert result["oracle"] == {"mean_reward": 1.0, "scored": 5, "failures": 0, "first_failure": None}
    assert result["empty"]["mean_reward"] == 0.0 and result["empty"]["failures"] == 0
