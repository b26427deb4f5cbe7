#!/usr/bin/env bash
# Set-up, idempotent: a virtual environment in .venv with ngym installed (editable) and its
# test dependencies; jq for the documented data recipes. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "setup: creating $ROOT/.venv" >&2
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.ngym-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "setup: installing ngym and its dependencies (pip)" >&2
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev]"
  touch "$stamp"
fi
if ! command -v jq >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing jq (apt-get)" >&2
    (apt-get update -qq && apt-get install -y -qq jq) >/dev/null 2>&1 || echo "setup: could not install jq" >&2
  else
    echo "setup: jq is not installed; the data recipes in the docs use it (apt-get install jq)" >&2
  fi
fi
export PATH="$ROOT/.venv/bin:$PATH"
