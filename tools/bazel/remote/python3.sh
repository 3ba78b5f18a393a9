#!/bin/sh
# The interpreter of remote actions: the worker image's environment (see BUILD.bazel).
image=/opt/torch-matrix
frozen="${RUNFILES_DIR:?set by the py_binary stub}/pyenv/frozen_requirements.txt"
# Results are cached under a key that names the client's frozen requirements: running them in an
# environment built from another list would put wrong results under that key.
if ! grep -v '^#' "$frozen" | cmp -s - "$image/frozen_requirements.txt"; then
  echo "python3.sh: the worker image's $image/frozen_requirements.txt differs from the client's" \
    "frozen requirements; rebuild the image (docs/remote.md, \"Worker image\")" >&2
  exit 97
fi
exec "$image/venv/bin/python3" "$@"
