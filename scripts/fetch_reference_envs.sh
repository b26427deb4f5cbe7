#!/usr/bin/env bash
# Copy the reference's (NVIDIA-NeMo/Gym, Apache-2.0) resources server folders at a tag into a
# directory outside the repository, for tests/interop/test_reference_envs.py and
# `python -m ngym.interop.measure`. Nothing is committed: the copy lives where you say.
#
#   scripts/fetch_reference_envs.sh [DEST] [TAG]        # DEST default /tmp/nemo-gym-reference, TAG v0.2.1
#   NEMO_GYM_GIT_DIR=/path/to/Gym.git scripts/fetch_reference_envs.sh   # an existing clone or mirror
#
# Then: NGYM_REFERENCE_ENVS=$DEST/resources_servers pytest tests/interop/test_reference_envs.py -m slow
set -euo pipefail
DEST="${1:-/tmp/nemo-gym-reference}"
TAG="${2:-v0.2.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(realpath -m "$DEST")/" in
  "$ROOT"/*) echo "error: $DEST is inside the repository; give a directory outside it (e.g. /tmp/nemo-gym-reference)" >&2; exit 2;;
esac
GIT_DIR_IN="${NEMO_GYM_GIT_DIR:-}"
if [ -z "$GIT_DIR_IN" ]; then
  GIT_DIR_IN="$(mktemp -d)/Gym.git"
  echo "fetch: cloning https://github.com/NVIDIA-NeMo/Gym ($TAG) into $GIT_DIR_IN" >&2
  git clone -q --bare --depth 1 --branch "$TAG" https://github.com/NVIDIA-NeMo/Gym "$GIT_DIR_IN"
fi
git --git-dir="$GIT_DIR_IN" rev-parse -q --verify "$TAG^{commit}" >/dev/null || {
  echo "error: $GIT_DIR_IN has no tag $TAG (git --git-dir=$GIT_DIR_IN tag lists them)" >&2; exit 2; }
mkdir -p "$DEST"
git --git-dir="$GIT_DIR_IN" archive "$TAG" resources_servers | tar -x -C "$DEST"
echo "fetch: $(ls "$DEST/resources_servers" | wc -l) folders of $TAG in $DEST/resources_servers" >&2
