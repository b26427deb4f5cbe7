"""Every ```bash block of docs/data-and-metrics.md, run in order in one shell, in a copy of the
checkout (so nothing is written into the repository). Blocks before the first one that starts
servers run in the fast suite; the whole document (with a real collection) runs as a slow test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "data-and-metrics.md"
BIN = Path(sys.executable).parent
COPIED = ("resources_servers", "responses_api_agents", "responses_api_models")
STARTS_SERVERS = ("ng_collect_rollouts", "ng_run")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def checkout_copy(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    for name in COPIED:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (root / "env.yaml").write_text("")  # not the checkout's env.yaml
    return root


def run_script(blocks: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NEMO_GYM_CONFIG_DICT", None)
    script = "set -euo pipefail\n" + "\n".join(blocks)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_doc_has_examples_of_every_command() -> None:
    text = "\n".join(bash_blocks(DOC.read_text()))
    for command in ("ng_prepare_data", "+mix=balanced", "ng_reward_profile", "ng_init_resources_server", "ng_test"):
        assert command in text, command


def test_doc_examples_without_servers(tmp_path: Path) -> None:
    blocks = bash_blocks(DOC.read_text())
    fast = [b for b in blocks if not any(c in b for c in STARTS_SERVERS)]
    root = checkout_copy(tmp_path)
    proc = run_script(fast, root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    # example_validation: 15 rows collated, the committed metrics agree
    first, _, _ = out.partition("15 results/examples/example.jsonl")
    assert _, out
    assert first.count("unchanged:") == 3 and "conflict" not in first, first
    # train preparation: 30 + 5 x 2 rows
    assert "40 results/train/train.jsonl" in out
    # the conflict and the bad row fail with exit code 2, and their fixes succeed
    assert out.count("failed: exit code 2") == 2, out
    assert "synonyms_train_metrics_conflict.json" in out
    mix = json.loads((root / "results/train_mixed/train_mix_metrics.json").read_text())
    assert mix["batch_size"] == 8 and mix["seed"] == 7
    assert all(
        run["rows_per_environment"]
        == {"example_single_tool_call_simple_agent": 4, "example_multi_step_simple_agent": 4}
        for run in mix["batches"]
    )
    # the scaffolded environment passed ng_test
    assert "ng_test resources_servers/capital_quiz: passed" in out


@pytest.mark.slow
def test_all_doc_examples(tmp_path: Path) -> None:
    root = checkout_copy(tmp_path)
    proc = run_script(bash_blocks(DOC.read_text()), root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    aggregate = json.loads((root / "results/eval/rollouts_aggregate_metrics.json").read_text())
    assert aggregate["overall"]["rollouts"] == 60
    assert aggregate["overall"]["pass@k"] == {"pass@1": 1.0, "pass@2": 1.0, "pass@4": 1.0}
    assert re.search(r'\{"pass@1":1(\.0)?,"pass@2":1(\.0)?,"pass@4":1(\.0)?\}', proc.stdout), proc.stdout
