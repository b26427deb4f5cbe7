"""ng_prepare_data runs a dataset's seeded generator (``generator``, ``num_rows``, ``seed``,
``generator_args``) when its file is missing, and the environments' generators are deterministic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ngym.cli.common import DEPLOYMENT_KEYS, command_args, load
from ngym.config.schema import DatasetConfig
from ngym.data.generators import run_generator
from ngym.data.prepare import POLICY_PLACEHOLDERS, PrepareArgs, PrepareReport, format_report, prepare
from ngym.errors import ConfigError, InputError

GENERATOR = '''
import random

def generate(split, num_rows, seed, prefix="q"):
    r = random.Random(f"{split}/{seed}")
    for i in range(num_rows):
        yield {"responses_create_params": {"input": [{"role": "user", "content": f"{prefix}{r.random()}"}]}, "i": i}
'''


@pytest.fixture(autouse=True)
def _restore_cwd() -> Any:
    before = os.getcwd()
    yield
    os.chdir(before)


def config(tmp_path: Path, **entry: Any) -> Path:
    (tmp_path / "env" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "env" / "generate.py").write_text(GENERATOR)
    datasets = [{"name": "train", "type": "train", "jsonl_fpath": "env/data/train.jsonl", "license": "MIT",
                 "generator": "generate.py", "num_rows": 30, "seed": 3, **entry}]
    path = tmp_path / "env.yaml"
    path.write_text(json.dumps({"agent": {"responses_api_agents": {"simple_agent": {
        "entrypoint": "app.py", "datasets": datasets}}}}))
    return path


def run(tmp_path: Path, *extra: str) -> PrepareReport:
    os.chdir(tmp_path)
    args = ["+config_paths=[env.yaml]", "+output_dirpath=out", "+mode=train_preparation", *extra]
    cfg, pc = load(args, command="ng_prepare_data", model=PrepareArgs, known=DEPLOYMENT_KEYS,
                   initial_global_config_dict=dict(POLICY_PLACEHOLDERS), skip_load_from_dotenv=True)
    return prepare(command_args(cfg, PrepareArgs, "ng_prepare_data"), cfg, pc.sources)


def test_missing_file_is_generated_then_reused(tmp_path: Path) -> None:
    config(tmp_path)
    report = run(tmp_path)
    data = tmp_path / "env" / "data" / "train.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 30 and [r["i"] for r in rows] == list(range(30))
    assert len(report.generated) == 1 and "generated" in format_report(report)
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == 30
    metrics = json.loads((tmp_path / "env" / "data" / "train_metrics.json").read_text())
    assert "generator" not in metrics and metrics["Number of examples"] == 30
    before = data.read_text()
    assert run(tmp_path).generated == [] and data.read_text() == before       # kept
    assert len(run(tmp_path, "+regenerate=true").generated) == 1 and data.read_text() == before  # same seed, same rows


def test_seed_and_args_change_the_rows(tmp_path: Path) -> None:
    config(tmp_path, seed=4, generator_args={"prefix": "z"})
    run(tmp_path)
    first = json.loads((tmp_path / "env" / "data" / "train.jsonl").read_text().splitlines()[0])
    assert first["responses_create_params"]["input"][0]["content"].startswith("z")


def test_errors_name_the_dataset(tmp_path: Path) -> None:
    config(tmp_path, generator="nope.py")
    with pytest.raises(ConfigError, match="generator 'nope.py' not found"):
        run(tmp_path)
    with pytest.raises(ValueError, match="names a generator .* but no num_rows"):
        DatasetConfig(name="t", type="example", jsonl_fpath="x.jsonl", generator="g.py")
    (tmp_path / "short.py").write_text("def generate(split, num_rows, seed):\n    yield {'a': 1}\n")
    os.chdir(tmp_path)
    with pytest.raises(InputError, match="wrote 1 rows for dataset 't', not the num_rows 2"):
        run_generator(DatasetConfig(name="t", type="example", jsonl_fpath="o.jsonl", generator="short.py", num_rows=2))
    assert not (tmp_path / "o.jsonl").exists()


ENVS = ["code_gen", "text_to_sql", "mastermind", "reasoning_gym", "mcp_tools"]


@pytest.mark.parametrize("env", ENVS)
def test_environment_generators_are_deterministic(env: str, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    if not (repo / "resources_servers" / env / "generate.py").is_file():
        pytest.skip(f"{env} has no generator")
    os.chdir(repo)
    entry = {"name": "v", "type": "validation", "jsonl_fpath": f"resources_servers/{env}/data/validation.jsonl",
             "generator": f"resources_servers/{env}/generate.py", "num_rows": 12, "seed": 5, "license": "Apache 2.0"}
    a, _ = run_generator(DatasetConfig.model_validate(entry), tmp_path / "a.jsonl")
    b, _ = run_generator(DatasetConfig.model_validate(entry), tmp_path / "b.jsonl")
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 12


def test_the_documented_entry_is_valid() -> None:
    """The YAML of docs/data-and-metrics.md's "Generated datasets" is a valid entry whose generator exists."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    doc = (repo / "docs" / "data-and-metrics.md").read_text()
    section = doc.split("### Generated datasets", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (entry,) = yaml.safe_load(block)["datasets"]
    config = DatasetConfig.model_validate(entry)
    assert config.generator is not None and (repo / config.generator).is_file() and config.num_rows == 2000
