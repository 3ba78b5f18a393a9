#!/usr/bin/env bash
# Builds the remote workers' Python environment at the fixed path the remote toolchain
# (//tools/bazel/remote) runs: what a worker image must contain (docs/remote.md, "Worker image").
#   tools/remote/install_worker_env.sh [REQUIREMENTS]
# REQUIREMENTS is best the client's frozen list (bazel-main/external/pyenv/frozen_requirements.txt):
# the image must match it exactly, or remote tests refuse to run. Default: requirements.txt.
# Idempotent: does nothing when the image was already built from the same file.
set -euo pipefail
image=/opt/torch-matrix
req=${1:-$(dirname "$0")/../../requirements.txt}
python=${MATRIX_BASE_PYTHON:-python3}  # the same base Python as the clients' (python_env.bzl)

if [ -f "$image/built_from.txt" ] && cmp -s "$req" "$image/built_from.txt"; then
  echo "install_worker_env: $image already built from $req"
  exit 0
fi
echo "install_worker_env: building $image/venv from $req with $python"
rm -rf "$image/venv"
mkdir -p "$image"
"$python" -m venv "$image/venv"
pip=("$image/venv/bin/python3" -m pip --disable-pip-version-check --no-input)
"${pip[@]}" install -q -r "$req"
# What python3.sh compares with the client's frozen requirements before running anything.
"${pip[@]}" freeze --all >"$image/frozen_requirements.txt"
cp "$req" "$image/built_from.txt"
