"""Every ```bash block of docs/interop.md, run in order in one shell, in a copy of the environment
folders (nothing is written into the repository)."""

from __future__ import annotations

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
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    shutil.copytree(REPO / "resources_servers" / "text_games", tmp_path / "resources_servers" / "text_games")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "games.jsonl" in done.stdout and done.stdout.strip().endswith("5 games.jsonl")
    assert "nothing to install" in done.stdout
