"""The reference's commands ng_e2e_collect_rollouts (spec §2.3) and ng_test_all (§2.6), end to end as
console scripts: real processes, the scripted model, files written by the test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, command_env, free_port

MULTI_STEP = (REPO / "resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()
MODEL = "responses_api_models/openai_model/configs/openai_model.yaml"


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["ng_e2e_collect_rollouts", "ng_test_all"])
def test_help(command: str, tmp_path: Path) -> None:
    for flag in ("--help", "+help=true"):
        done = run([command, flag], tmp_path, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {command}"), done.stderr
    helped = run([command, "--help"], tmp_path, timeout=60).stdout
    expected = ["+config_paths", "+output_jsonl_fpath", "+split", "+num_samples_in_parallel", "+responses_create_params"]
    for argument in expected if command == "ng_e2e_collect_rollouts" else ["+fail_on_total_and_test_mismatch"]:
        assert argument in helped
    assert command in run(["ng_help"], tmp_path, timeout=60).stdout


def _environment_config(work: Path, validation: str) -> Path:
    (work / "data").mkdir(exist_ok=True)
    (work / "data" / "train.jsonl").write_text("\n".join(MULTI_STEP) + "\n")
    (work / "data" / "validation.jsonl").write_text("\n".join(MULTI_STEP[:2]) + "\n")
    config = work / "multi_step.yaml"
    config.write_text(
        "multi_step_resources_server:\n  resources_servers:\n    example_multi_step:\n      entrypoint: app.py\n"
        "      domain: instruction_following\n"
        "multi_step_agent:\n  responses_api_agents:\n    simple_agent:\n      entrypoint: app.py\n"
        "      resources_server: {type: resources_servers, name: multi_step_resources_server}\n"
        "      model_server: {type: responses_api_models, name: policy_model}\n"
        "      datasets:\n"
        "      - {name: train, type: train, license: MIT, jsonl_fpath: data/train.jsonl, num_repeats: 2, source: huggingface}\n"
        f"{validation}"
    )
    return config


@pytest.mark.slow
def test_ng_e2e_collect_rollouts_prepares_starts_collects_and_stops(workdir: Path) -> None:
    config = _environment_config(workdir, "      - {name: validation, type: validation, license: MIT, jsonl_fpath: data/validation.jsonl}\n")
    out = workdir / "results" / "train_rollouts.jsonl"
    done = run(["ng_e2e_collect_rollouts", f"+config_paths=[{MODEL},{config}]", f"+output_jsonl_fpath={out}", "+split=train",
                "+num_samples_in_parallel=4", "+responses_create_params.temperature=0.5", f"+head_server.port={free_port()}"], workdir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    prepared = workdir / "results" / "preprocessed_datasets"
    assert {p.name for p in prepared.glob("*.jsonl")} == {"train.jsonl", "validation.jsonl"}
    rollouts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rollouts) == 10, "5 rows, num_repeats 2"
    assert all(r["reward"] == 1.0 for r in rollouts), [r["reward"] for r in rollouts]
    assert all(r["agent_ref"]["name"] == "multi_step_agent" for r in rollouts)
    assert all(r["responses_create_params"]["temperature"] == 0.5 for r in rollouts)
    # the servers were stopped: the head port is free again, nothing answers there
    validation = workdir / "results" / "validation_rollouts.jsonl"
    done = run(["ng_e2e_collect_rollouts", f"+config_paths=[{MODEL},{config}]", f"+output_jsonl_fpath={validation}",
                "+split=validation", f"+head_server.port={free_port()}"], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(validation.read_text().splitlines()) == 2


def test_ng_e2e_collect_rollouts_refuses_a_split_the_config_lacks(tmp_path: Path) -> None:
    config = _environment_config(tmp_path, "")
    (tmp_path / "env.yaml").write_text("policy_base_url: http://127.0.0.1:9/v1\npolicy_api_key: x\npolicy_model_name: m\n")
    done = run(["ng_e2e_collect_rollouts", f"+config_paths=[{REPO / MODEL},{config}]", "+output_jsonl_fpath=out/v.jsonl", "+split=validation"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no validation dataset in the agents of +config_paths (prepared splits: train)" in done.stderr
    done = run(["ng_e2e_collect_rollouts", f"+config_paths=[{REPO / MODEL},{config}]", "+output_jsonl_fpath=out/v.jsonl", "+split=test"], tmp_path)
    assert done.returncode == 2 and "split" in done.stderr and "Traceback" not in done.stderr
    done = run(["ng_e2e_collect_rollouts", f"+config_paths=[{REPO / MODEL},{config}]", "+split=train"], tmp_path)
    assert done.returncode == 2 and "output_jsonl_fpath" in done.stderr


@pytest.mark.slow
def test_ng_test_all_tests_every_server_with_a_readme(tmp_path: Path) -> None:
    servers = tmp_path / "resources_servers"
    shutil.copytree(REPO / "resources_servers" / "mastermind", servers / "mastermind", ignore=shutil.ignore_patterns("__pycache__"))
    broken = servers / "broken_mastermind"
    shutil.copytree(servers / "mastermind", broken)
    for path in broken.rglob("*.py"):
        path.write_text(path.read_text().replace("resources_servers.mastermind", "resources_servers.broken_mastermind"))
    tests = broken / "tests" / "test_app.py"
    tests.write_text(tests.read_text() + "\n\ndef test_that_fails() -> None:\n    assert 1 == 2\n")
    no_tests = servers / "no_tests"
    shutil.copytree(servers / "mastermind", no_tests, ignore=shutil.ignore_patterns("tests"))
    for path in no_tests.rglob("*.py"):
        path.write_text(path.read_text().replace("resources_servers.mastermind", "resources_servers.no_tests"))
    undocumented = servers / "undocumented"
    undocumented.mkdir()
    (servers / "__pycache__").mkdir()
    shutil.copy(REPO / "resources_servers" / "conftest.py", servers / "conftest.py")  # the environments' anyio backend
    (tmp_path / "tests").symlink_to(REPO / "tests")  # the environments' tests import tests.fakes
    done = run(["ng_test_all"], tmp_path, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out[-3000:] + done.stderr[-3000:]
    assert "ng_test_all: 3 server directories tested" in out
    assert "passed           1 (33.3%)" in out
    assert "failed           1 (33.3%): resources_servers/broken_mastermind" in out
    assert "tests missing    1 (33.3%): resources_servers/no_tests" in out
    assert "no README.md (not tested): resources_servers/undocumented" in out and "__pycache__" not in out.split("summary")[-1]
    shutil.rmtree(broken)
    shutil.rmtree(no_tests)
    done = run(["ng_test_all"], tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    done = run(["ng_test_all", "+fail_on_total_and_test_mismatch=true"], tmp_path, timeout=600)
    assert done.returncode == 1 and "1 of 2 server directories have no README.md" in done.stderr


def test_ng_test_all_outside_a_project(tmp_path: Path) -> None:
    done = run(["ng_test_all"], tmp_path, timeout=60)
    assert done.returncode == 2 and "no server directories under" in done.stderr and "Traceback" not in done.stderr
