"""Every ```bash block of docs/scale-out.md, run in order in one shell in a copy of the checkout;
then the same blocks again: the sharded collection resumes and runs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_docs_data import bash_blocks, checkout_copy, run_script

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "scale-out.md"

pytestmark = pytest.mark.slow


def test_the_sharded_collection_example_runs_and_reruns_to_nothing(tmp_path: Path) -> None:
    blocks = bash_blocks(DOC.read_text())
    assert any("+num_shards=2" in b for b in blocks)
    root = checkout_copy(tmp_path)
    first = run_script(blocks, root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "200 rollouts written in" in first.stdout and first.stdout.rstrip().endswith("200")
    assert "Traceback" not in first.stdout + first.stderr
    again = run_script(blocks, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 rollouts written" in again.stdout and "(200 already done)" in again.stdout
    assert again.stdout.rstrip().endswith("200")
