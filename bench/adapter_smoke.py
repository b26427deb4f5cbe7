"""The interop adapters on the embedded local model: each ecosystem's example rows collected through
the user's command, one environment after another, and one table of what came back.

    python bench/adapter_smoke.py                                   # OpenEnv, reasoning-gym, TextArena
    python bench/adapter_smoke.py --reference /tmp/nemo-gym-reference/resources_servers \\
        --reference-envs mcqa example_single_tool_call               # + NeMo Gym folders, unchanged

For each environment: ``ng_collect_rollouts "+config_paths=[local_model.yaml,<env>.yaml]"`` on its
``data/example.jsonl`` (greedy, ``--max-tokens`` per call, ``--rows`` rows), in a process of its own,
servers started and stopped included. A NeMo Gym folder is dropped unchanged into
``resources_servers/`` of a temporary copy of this checkout (as a user would) and run from there.
Prints a markdown table (environment, rows, mean reward, failures, seconds) and writes
``--out`` (JSON lines, one per environment).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCAL_MODEL = "responses_api_models/local_model/configs/local_model.yaml"
#: in the order they run: the multi-turn text games last (0 of 5 games finished in 14 min once)
ECOSYSTEMS = {
    "openenv": "OpenEnv (openenv-core server through its client)",
    "reasoning_gym": "reasoning-gym (procedural tasks by name)",
    "text_games": "TextArena (Gymnasium-style text games)",
}


def agent_names(config: Path) -> list[str]:
    """The agent instances a config file defines (top-level keys holding ``responses_api_agents``)."""
    data = yaml.safe_load(config.read_text()) or {}
    return [k for k, v in data.items() if isinstance(v, dict) and "responses_api_agents" in v]


def collect(root: Path, env: str, config: Path, args: argparse.Namespace, threads: str) -> dict[str, Any]:
    rows = root / "resources_servers" / env / "data" / "example.jsonl"
    out = Path(args.workdir) / f"{env}_rollouts.jsonl"
    agents = agent_names(config)
    command = [
        str(BIN / "ng_collect_rollouts"),
        f"+config_paths=[{LOCAL_MODEL},{config.relative_to(root)}]",
        f"+input_jsonl_fpath={rows}",
        f"+output_jsonl_fpath={out}",
        f"+agent_name={agents[0]}",
        f"+limit={args.rows}",
        "+overwrite=true",
        "+responses_create_params.temperature=0",
        f"+responses_create_params.max_output_tokens={args.max_tokens}",
        f"+policy_model.responses_api_models.local_model.threads={threads}",
    ]
    t0 = time.monotonic()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=args.timeout_s)
    seconds = time.monotonic() - t0
    rollouts = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    failures_path = out.with_name(out.stem + "_failures.jsonl")
    failures = [json.loads(line) for line in failures_path.read_text().splitlines() if line.strip()] if failures_path.exists() else []
    failures = [f for f in failures if not f.get("retried")]
    rewards = [float(r.get("reward", 0.0)) for r in rollouts]
    calls = [sum(1 for item in r["response"]["output"] if item.get("type") == "function_call") for r in rollouts]
    return {
        "environment": env,
        "ecosystem": ECOSYSTEMS.get(env, "NeMo Gym folder, unchanged"),
        "rows": len(rollouts),
        "mean_reward": round(sum(rewards) / len(rewards), 3) if rewards else None,
        "solved": sum(r >= 1.0 for r in rewards),
        "episodes_with_tool_calls": sum(c > 0 for c in calls),
        "failures": [f.get("kind") or f.get("error", {}).get("kind") for f in failures],
        "seconds": round(seconds, 1),
        "exit_code": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-3:] if done.returncode else [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="*", default=list(ECOSYSTEMS), help="environments of this checkout")
    parser.add_argument("--reference", type=Path, help="a NeMo Gym resources_servers/ folder (scripts/fetch_reference_envs.sh)")
    parser.add_argument("--reference-envs", nargs="*", default=[], help="folders of --reference to run unchanged")
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", default=None, help="llama-server threads (default: python -m ngym.models.llama.threads)")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--workdir", default=None, help="where the rollouts go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "adapter_smoke_results.jsonl")
    args = parser.parse_args(argv)
    if args.reference_envs and args.reference is None:
        parser.error("--reference-envs needs --reference <NeMo Gym resources_servers folder>")
    threads = args.threads or subprocess.run(
        [sys.executable, "-m", "ngym.models.llama.threads"], capture_output=True, text=True, check=True
    ).stdout.strip()
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="ngym-adapter-smoke-")
    results = []
    for env in args.envs:
        results.append(collect(REPO, env, REPO / "resources_servers" / env / "configs" / f"{env}.yaml", args, threads))
        print(json.dumps(results[-1]), flush=True)
    if args.reference_envs:
        from ngym.interop.measure import copy_checkout

        root = copy_checkout(Path(tempfile.mkdtemp(prefix="ngym-reference-checkout-")))
        for env in args.reference_envs:
            target = root / "resources_servers" / env
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(args.reference / env, target)
            config = next((target / "configs").glob("*.yaml"))
            results.append(collect(root, env, config, args, threads))
            results[-1]["environment"] = f"{env} (NeMo Gym's folder)"
            print(json.dumps(results[-1]), flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with args.out.open("a") as f:
        for r in results:
            f.write(json.dumps({"date": stamp, "threads": threads, **r}) + "\n")
    print("\n| environment | ecosystem | rows | mean reward | solved | with a tool call | failures | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['environment']} | {r['ecosystem']} | {r['rows']} | {r['mean_reward']} | {r['solved']} | "
              f"{r['episodes_with_tool_calls']} | {len(r['failures'])} {sorted(set(map(str, r['failures'])))} | {r['seconds']} |")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
