"""docs/writing-an-environment.md, run: its app.py, tool schema, config, data row and tests are
written into an environment folder; the schema must be what the code declares, the config must
validate, the doc's tests must pass, and a rollout of the doc's row through simple_agent (whose
row carries no tools) must be rewarded."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from ngym.devkit.testing.asgi import wire
from ngym.env import Environment
from ngym.config.instance import parse_instance
from responses_api_agents.simple_agent.app import SimpleAgent
from tests.fakes import QueueModel, call, make, ref, say

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "writing-an-environment.md"


def blocks() -> dict[str, str]:
    """Fenced blocks of the doc that name a file (```python app.py) or a role (```json tool-schema)."""
    found = re.findall(r"```(\w+) ([\w./-]+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: body for _, name, body in found}


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs_env")
    env = root / "resources_servers" / "guess_number"
    for name, body in blocks().items():
        if "/" in name or name.endswith(".py"):
            path = env / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    return env


@pytest.fixture(scope="module")
def env_class(env_dir: Path) -> type[Environment[Any, Any]]:
    spec = importlib.util.spec_from_file_location("docs_guess_number_app", env_dir / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls = module.GuessNumber
    assert issubclass(cls, Environment)
    return cls


def test_the_doc_has_every_part() -> None:
    assert {"app.py", "tool-schema", "configs/guess_number.yaml", "data/example.jsonl", "tests/test_app.py"} <= set(blocks())


def test_the_schema_shown_is_the_one_declared(env_class: type[Environment[Any, Any]]) -> None:
    assert env_class.tool_schemas() == json.loads(blocks()["tool-schema"])


def test_the_config_validates(env_dir: Path, env_class: type[Environment[Any, Any]]) -> None:
    cfg = OmegaConf.create(blocks()["configs/guess_number.yaml"])
    settings = parse_instance(cfg, "guess_number_resources_server").settings
    config = env_class.config_type().model_validate({**settings, "name": "guess_number_resources_server"})
    assert config.max_guesses == 7  # type: ignore[attr-defined]


def test_the_docs_tests_pass(env_dir: Path) -> None:
    root = env_dir.parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(root), str(env_dir / "tests")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout


@pytest.mark.anyio
async def test_a_rollout_of_the_docs_row(env_class: type[Environment[Any, Any]]) -> None:
    row = json.loads(blocks()["data/example.jsonl"])
    assert "tools" not in row["responses_create_params"]
    model = make(QueueModel, "model")
    model.turns = [[call("guess", {"number": 50})], [call("guess", {"number": 25})], [call("guess", {"number": 37})], [say("37")]]
    agent = make(SimpleAgent, "agent", resources_server=ref("resources_servers", "env"),
                 model_server=ref("responses_api_models", "model"))
    client = wire({"env": make(env_class, "env", domain="games"), "model": model, "agent": agent})
    answer = await client.post("agent", "/run", json=row)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["reward"], result["guesses"], result["found_with_tool"]) == (1.0, 3, True)
    assert result["responses_create_params"]["tools"] == env_class.tool_schemas()
    outputs = [json.loads(i["output"]) for i in result["response"]["output"] if i["type"] == "function_call_output"]
    assert [o["hint"] for o in outputs] == ["lower", "higher", "correct"]
