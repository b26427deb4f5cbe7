#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` to skip the end-to-end tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NGYM_TRAIN="${NGYM_TRAIN:-1}"  # the tests include 2 real GRPO steps: install the train extra (NGYM_TRAIN=0 skips)
export NGYM_RAY="${NGYM_RAY:-1}"  # the tests place servers on real Ray clusters: install the ray extra (NGYM_RAY=0 skips)
source "$ROOT/scripts/setup.sh"
# --- ng_viewer's browser test: headless Chromium and its driver (Debian packages), root only ---
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (apt-get) for the viewer's browser test" >&2
    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
      || echo "setup: could not install chromium; tests/test_viewer.py's browser test will be skipped" >&2
  else
    echo "setup: chromium is not installed; the viewer's browser test is skipped (apt-get install chromium chromium-driver)" >&2
  fi
fi
# --- end ng_viewer block ---
cd "$ROOT"
exec python -m pytest -p no:cacheprovider "$@"
