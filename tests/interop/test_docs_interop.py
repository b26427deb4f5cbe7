"""Every ```bash block of docs/interop.md, run in order in one shell, in a copy of the environment
folders (nothing is written into the repository)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "interop.md"
BIN = Path(sys.executable).parent


def test_interop_doc_commands_run(tmp_path: Path) -> None:
    pytest.importorskip("textarena")
    pytest.importorskip("gymnasium")
    pytest.importorskip("openenv.core")
    pytest.importorskip("pyarrow")
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    for env in ("text_games", "openenv"):
        shutil.copytree(REPO / "resources_servers" / env, tmp_path / "resources_servers" / env, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 games.jsonl" in done.stdout
    assert "nothing to install" in done.stdout
    # OpenEnv: the rows the guess server's resets make are the committed example rows
    assert "5 openenv_rows.jsonl" in done.stdout
    assert (tmp_path / "openenv_rows.jsonl").read_text() == (REPO / "resources_servers/openenv/data/example.jsonl").read_text()
    # a Parquet file through ng_prepare_data by its column mapping
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first["responses_create_params"]["input"] == [
        {"role": "system", "content": "Answer with the number only."}, {"role": "user", "content": "What is 2 + 2?"}]
    assert first["expected_answer"] == "4" and "level" not in first and first["agent_ref"]["name"] == "arithmetic_agent"
    assert json.loads((tmp_path / "arithmetic_metrics.json").read_text())["Number of examples"] == 5
