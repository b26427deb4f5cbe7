"""ng_init_resources_server and ng_test: a scaffolded environment passes its tests and the
conformance check, every environment of the repository conforms, and the check catches the
mistakes it is there for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.conformance import check_server, compare_schemas
from ngym.errors import ArgumentError
from ngym.devkit.scaffold import class_prefix, init_resources_server

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENVIRONMENTS = sorted(p.parent.name for p in (REPO / "resources_servers").glob("*/app.py"))


def ng(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / command), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_conforms(env: str) -> None:
    report = check_server(REPO / "resources_servers" / env, should_validate_data=True)
    assert report.ok, report.format()
    assert [c.name for c in report.checks] == ["config", "app", "example data", "tools", "verify", "data files"]


def test_scaffolded_environment_passes_ng_test(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("")
    made = ng("ng_init_resources_server", "+entrypoint=resources_servers/trivia_env", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    env_dir = tmp_path / "resources_servers" / "trivia_env"
    for relative in (
        "app.py",
        "configs/trivia_env.yaml",
        "data/example.jsonl",
        "data/example_metrics.json",
        "README.md",
        "tests/test_app.py",
    ):
        assert (env_dir / relative).is_file(), relative
    assert len((env_dir / "data/example.jsonl").read_text().splitlines()) == 5
    assert "class TriviaEnvResourcesServer(Environment[Task, NoState])" in (env_dir / "app.py").read_text()
    assert all("tools" not in json.loads(row)["responses_create_params"] for row in (env_dir / "data/example.jsonl").read_text().splitlines())
    tested = ng("ng_test", "+entrypoint=resources_servers/trivia_env", "+should_validate_data=true", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "5 passed" in tested.stdout  # the generated tests, the conformance test among them
    assert "ng_test resources_servers/trivia_env: passed" in tested.stdout
    assert "FAIL" not in tested.stdout
    # a second time: refused, nothing overwritten
    again = ng("ng_init_resources_server", "+entrypoint=resources_servers/trivia_env", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_ng_test_fails_when_the_environment_tests_fail(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("")
    env_dir = tmp_path / "resources_servers" / "broken_env"
    init_resources_server(env_dir)
    app = env_dir / "app.py"
    edit(app, '"France": "Paris"', '"France": "Lyon"')
    proc = ng("ng_test", f"+entrypoint={env_dir}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "tests failed (pytest exit code 1)" in proc.stderr


def test_ng_test_names_a_missing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ngym.cli.test import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ng_test", "+entrypoint=resources_servers/nothing_here"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert "+entrypoint='resources_servers/nothing_here': no such directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entrypoint", "needle"),
    [
        ("resources_servers/My-Env", "not a valid environment name"),
        ("envs/my_env", "resources_servers/my_env"),
        ("resources_servers/9x", "not a valid"),
    ],
)
def test_bad_entrypoints_are_refused(tmp_path: Path, entrypoint: str, needle: str) -> None:
    with pytest.raises(ArgumentError, match=needle):
        init_resources_server(tmp_path / entrypoint)
    assert not any(tmp_path.rglob("app.py"))


def test_class_prefix() -> None:
    assert class_prefix("my_math_env") == "MyMathEnv" and class_prefix("x") == "X"


# ---- the conformance check finds what it should ----------------------------------------------


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    path = tmp_path / "resources_servers" / "quiz"
    init_resources_server(path)
    assert check_server(path, should_validate_data=True).ok
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def failed(path: Path, validate: bool = False) -> dict[str, str]:
    report = check_server(path, should_validate_data=validate)
    assert not report.ok
    return {c.name: c.detail for c in report.checks if not c.ok}


def with_tools(env_dir: Path, change: Any = None) -> None:
    """Give every example row the scaffold's declared tools (rows may carry them), changed by ``change``."""
    tools = [
        {
            "type": "function",
            "name": "get_capital",
            "description": "Look up the capital city of a country.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"country": {"type": "string", "description": "The country, e.g. France"}},
                "required": ["country"],
                "additionalProperties": False,
            },
        }
    ]
    if change is not None:
        change(tools[0])
    data = env_dir / "data/example.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:
        row["responses_create_params"]["tools"] = tools
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_rows_may_carry_the_declared_tools(env_dir: Path) -> None:
    with_tools(env_dir)
    assert check_server(env_dir).ok


def test_a_tool_argument_of_the_wrong_type(env_dir: Path) -> None:
    with_tools(env_dir, lambda t: t["parameters"]["properties"]["country"].update(type="integer"))
    assert ("the row's tool 'get_capital' differs from QuizResourcesServer's declaration at "
            'parameters.properties.country.type: the row has "integer", the environment declares "string"') in failed(env_dir)["tools"]


def test_a_tool_without_a_route(env_dir: Path) -> None:
    with_tools(env_dir, lambda t: t.update(name="get_capitol"))
    assert "the row offers the tool 'get_capitol', which QuizResourcesServer does not declare" in failed(env_dir)["tools"]


def test_a_route_that_requires_more_than_the_tool(env_dir: Path) -> None:
    with_tools(env_dir)
    edit(env_dir / "app.py", "country: str) ->", "country: str, language: str) ->")
    assert "parameters.properties.language: the environment declares" in failed(env_dir)["tools"]


def test_a_verify_that_crashes(env_dir: Path) -> None:
    edit(env_dir / "app.py", "answer = response.output_text()", "answer = response.output[0].text()")
    detail = failed(env_dir)["verify"]
    assert "(empty output): /verify answered 500" in detail and "one message" not in detail


def test_a_reward_that_is_not_a_float(env_dir: Path) -> None:
    edit(env_dir / "app.py", "reward=float(correct)", "reward=float('nan')")
    assert "a reward must be finite" in failed(env_dir)["verify"]


def test_example_data_of_four_rows(env_dir: Path) -> None:
    data = env_dir / "data/example.jsonl"
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:4]))
    problems = failed(env_dir, validate=True)
    assert "has 4 rows" in problems["example data"] and "disagrees with the data" in problems["data files"]


def test_a_conflict_file_and_missing_metrics(env_dir: Path) -> None:
    (env_dir / "data/example_metrics_conflict.json").write_text("{}")
    assert "example_metrics_conflict.json exists" in failed(env_dir, validate=True)["data files"]
    (env_dir / "data/example_metrics_conflict.json").unlink()
    (env_dir / "data/example_metrics.json").unlink()
    assert check_server(env_dir).ok  # only checked with should_validate_data
    assert "no example_metrics.json" in failed(env_dir, validate=True)["data files"]


def test_a_config_without_domain_or_agent(env_dir: Path) -> None:
    config = env_dir / "configs/quiz.yaml"
    edit(config, "      domain: other\n", "")
    assert "no `domain`" in failed(env_dir)["config"]
    config.write_text(config.read_text().split("quiz_simple_agent:")[0] + "      domain: other\n")
    assert "no responses_api_agents instance refers to" in failed(env_dir)["config"]


def test_an_app_that_does_not_import(env_dir: Path) -> None:
    edit(env_dir / "app.py", "from pydantic import BaseModel", "from pydantic import NoSuchThing")
    assert "importing app.py failed: ImportError" in failed(env_dir)["app"]


@pytest.mark.parametrize(
    ("declared", "body", "problems"),
    [
        (
            {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
            {"properties": {"x": {"type": "number"}}, "required": ["x"]},
            [],
        ),
        (
            {"properties": {"x": {"type": "number"}}, "required": ["x"]},
            {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
            ["'x': the tool says"],
        ),
        (
            {"properties": {"x": {"type": ["string", "null"]}}},
            {"properties": {"x": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
            [],
        ),
        (
            {"properties": {"x": {"type": "string"}}},
            {"properties": {}, "additionalProperties": False},
            ["(it rejects it)"],
        ),
        ({"properties": {"x": {"type": "string"}}}, {"type": "object", "additionalProperties": True}, []),
        (
            {"properties": {"x": {"type": "array", "items": {"type": "integer"}}}, "required": ["x"]},
            {"$ref": "#/components/schemas/Body"},
            [],
        ),
        ({"properties": {}}, None, []),
        ({"properties": {"x": {"type": "string"}}}, None, ["reads no JSON body"]),
    ],
)
def test_schema_comparison(declared: dict, body: dict | None, problems: list[str]) -> None:
    components = {
        "Body": {
            "type": "object",
            "properties": {"x": {"type": "array", "items": {"type": "integer"}}},
            "required": ["x"],
        }
    }
    found = compare_schemas("t", declared, body, components)
    assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found, strict=True)), found


def test_scaffold_metrics_match_what_prepare_data_writes(env_dir: Path) -> None:
    committed = json.loads((env_dir / "data/example_metrics.json").read_text())
    assert committed["jsonl_fpath"] == "resources_servers/quiz/data/example.jsonl"
    assert committed["Number of examples"] == 5 and committed["expected_answer"] == {
        "unique_count": 5,
        "total_count": 5,
    }
