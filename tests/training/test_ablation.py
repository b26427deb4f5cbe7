"""The multi-environment ablation (examples/multienv_ablation.py) in a 2-step size: every arm (each
environment alone and the mix), every environment evaluated held-out before and after, the table and
the curves written. The values are not asserted (2 steps teach nothing); the structure is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.test_trl import load_example, needs_train

pytestmark = pytest.mark.slow


@needs_train
def test_ablation_two_steps_every_arm_every_environment(tmp_path: Path) -> None:
    module = load_example("multienv_ablation")
    summary = module.main([
        "--steps", "2", "--eval-every", "1", "--eval-tasks", "2", "--eval-k", "1", "--generations", "2",
        "--max-tokens", "8", "--imbalance", "2", "--out", str(tmp_path),
    ])
    envs = {"brevity_simple_agent", "instruction_following_simple_agent"}
    arms = {arm["arm"]: arm for arm in summary["arms"]}
    assert set(arms) == {"brevity", "instruction_following", "mix", "imbalanced_2x_naive", "imbalanced_2x_balanced"}
    assert arms["brevity"]["trained_on"] == ["brevity_simple_agent"]
    assert arms["mix"]["trained_on"] == sorted(envs)
    # 4 prompts in the budget; instruction_following has half of brevity's rows: the balanced mix
    # still trains on both equally, the naive one on whatever the shuffle gives
    assert arms["imbalanced_2x_balanced"]["prompts_per_env"] == {"brevity_simple_agent": 2, "instruction_following_simple_agent": 2}
    assert sum(arms["imbalanced_2x_naive"]["prompts_per_env"].values()) == 4
    for arm in arms.values():
        assert set(arm["before"]) == set(arm["after"]) == set(arm["difference"]) == envs  # every env, held out
        assert [c["step"] for c in arm["curve"]] == [0, 1, 2]
        for d in arm["difference"].values():
            assert d["paired_tasks"] == 2 and d["ci95_low"] <= d["difference"] <= d["ci95_high"]
        assert len(arm["train_history"]) == 2
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert len(saved["arms"]) == 5
    table = (tmp_path / "table.md").read_text()
    assert table.count("| brevity_simple_agent |") == 5


@needs_train
def test_unknown_arm_is_refused_with_the_arms_there_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_example("multienv_ablation")
    with pytest.raises(SystemExit) as stopped:
        module.main(["--arms", "mixx", "--imbalance", "3", "--out", str(tmp_path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--arms mixx: no such arm" in err and "imbalanced_3x_naive" in err and " mix" in err
