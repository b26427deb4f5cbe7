"""The starter mix (resources_servers/starter_mix.yaml): ten environments in one config, and the
balanced mix of their rows as ng_prepare_data collates it (every batch of 10 holds each environment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MIX = REPO / "resources_servers" / "starter_mix.yaml"


def test_the_starter_mix_names_ten_existing_environment_configs() -> None:
    paths = yaml.safe_load(MIX.read_text())["config_paths"]
    assert len(paths) == len(set(paths)) == 10
    for path in paths:
        assert (REPO / path).is_file(), path


def test_balanced_mix_of_the_ten_example_sets(tmp_path: Path) -> None:
    out = tmp_path / "mix"
    code = "import sys; sys.argv[0] = 'ng_prepare_data'; from ngym.cli.prepare_data import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "+config_paths=[resources_servers/starter_mix.yaml]", f"+output_dirpath={out}",
         "+mode=example_validation", "+mix=balanced", "+batch_size=10", "+mix_types=[example]"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (out / "example.jsonl").read_text().splitlines()]
    assert len(rows) == 50
    agents = {r["agent_ref"]["name"] for r in rows}
    assert len(agents) == 10
    for start in range(0, 50, 10):
        assert {r["agent_ref"]["name"] for r in rows[start : start + 10]} == agents
