#!/usr/bin/env bash
# The main job: set up (if needed), then collect rollouts of two environments mixed in one
# dataset (each row routed by its agent_ref), with every server started and stopped for you,
# and print per-environment metrics. Offline, no API key, no GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

# The policy: a scripted stand-in for an OpenAI-compatible API, on loopback.
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m ngym.testing.scripted_openai --port "$port" >/dev/null 2>&1 &
policy_pid=$!
trap 'kill $policy_pid 2>/dev/null || true' EXIT

mkdir -p results
input=results/demo_multienv_input.jsonl
jq -c '. + {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}' resources_servers/example_single_tool_call/data/example.jsonl > "$input"
jq -c '. + {"agent_ref": {"name": "example_multi_step_simple_agent"}}' resources_servers/example_multi_step/data/example.jsonl >> "$input"

config_paths="responses_api_models/openai_model/configs/openai_model.yaml,\
resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml,\
resources_servers/example_multi_step/configs/example_multi_step.yaml"
ng_collect_rollouts "+config_paths=[$config_paths]" \
  +policy_base_url="http://127.0.0.1:$port/v1" +policy_api_key=none +policy_model_name=scripted \
  +input_jsonl_fpath="$input" +output_jsonl_fpath=results/demo_multienv_rollouts.jsonl "$@"
