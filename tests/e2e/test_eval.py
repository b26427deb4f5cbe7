"""ng_eval end to end: it collects k samples per task through the real servers (one-shot) and
reports every environment of the mixed file; the scripted policy solves both, so pass@k is 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import command_env, free_port
from tests.e2e.procs import read_jsonl

pytestmark = pytest.mark.slow

MODEL = "responses_api_models/openai_model/configs/openai_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
MULTI = "resources_servers/example_multi_step/configs/example_multi_step.yaml"


def test_ng_eval_collects_k_samples_per_task_of_every_environment(workdir: Path) -> None:
    mixed = workdir / "results" / "validation.jsonl"
    rows = []
    for env, agent in (("example_single_tool_call", "example_single_tool_call_simple_agent"),
                       ("example_multi_step", "example_multi_step_simple_agent")):
        for line in (workdir / "resources_servers" / env / "data" / "example.jsonl").read_text().splitlines()[:3]:
            rows.append({**json.loads(line), "agent_ref": {"name": agent}})
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        ["ng_eval", f"+config_paths=[{MODEL},{SINGLE},{MULTI}]", f"+head_server.port={free_port()}",
         f"+input_jsonl_fpath={mixed}", "+output_jsonl_fpath=results/eval.jsonl", "+num_repeats=2"],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(read_jsonl(workdir / "results" / "eval.jsonl")) == 12
    report = json.loads((workdir / "results" / "eval_eval.json").read_text())
    by = {e["agent"]: e for e in report["environments"]}
    assert set(by) == {"example_single_tool_call_simple_agent", "example_multi_step_simple_agent"}
    for env in by.values():
        assert (env["tasks"], env["rollouts"], env["rollouts_per_task"]) == (3, 6, 2)
        assert env["mean_reward"] == 1.0 and env["pass_at_k"] == 1.0 and env["failures"] == {}
    assert "95% CI" in done.stdout
