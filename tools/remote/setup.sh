#!/usr/bin/env bash
# Installs what the remote integration test (//tools/remote:integration_test) needs, and nothing
# when it is already there; the test itself downloads nothing. CI calls this once per machine.
#   - Debian's postgresql (BuildGrid's scheduler database) and nginx (a plain HTTP cache, WebDAV PUT);
#     their system services are left stopped: the test starts its own on 127.0.0.1 and stops them.
#   - BuildGrid from PyPI in a virtual environment of Python >= 3.13, at $BUILDGRID_VENV.
#   - The worker image's Python environment at /opt/torch-matrix (the test's workers run on this host).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILDGRID_VENV=${BUILDGRID_VENV:-/opt/buildgrid/venv}
BUILDGRID_VERSION=0.9.1
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  echo "remote setup: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # Debian starts them on install (nginx on 0.0.0.0:80); the test runs its own instances.
    for pkg in "${need[@]}"; do $sudo systemctl disable --now "$pkg" || true; done
  fi
fi

installed=$("$BUILDGRID_VENV/bin/python" -m pip show buildgrid 2>/dev/null || true)
if ! grep -qx "Version: $BUILDGRID_VERSION" <<<"$installed"; then
  python=""
  for candidate in "${BUILDGRID_PYTHON:-}" python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3; do
    # A pyenv shim exists for every installed version but only runs the active ones: try each.
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "remote setup: BuildGrid needs Python >= 3.13: install one (e.g. pyenv install 3.13) or set BUILDGRID_PYTHON" >&2
    exit 1
  fi
  echo "remote setup: installing buildgrid==$BUILDGRID_VERSION into $BUILDGRID_VENV with $python"
  $sudo mkdir -p "$(dirname "$BUILDGRID_VENV")"
  $sudo "$python" -m venv "$BUILDGRID_VENV"
  $sudo "$BUILDGRID_VENV/bin/python" -m pip install -q --disable-pip-version-check "buildgrid==$BUILDGRID_VERSION"
fi

# The same base Python as python_env.bzl's (resolved here: sudo would reset PATH, and pyenv with it).
base=$("${MATRIX_BASE_PYTHON:-python3}" -c 'import sys; print(sys.executable)')
$sudo env MATRIX_BASE_PYTHON="$base" tools/remote/install_worker_env.sh requirements.txt
echo "remote setup: postgresql, nginx, buildgrid $BUILDGRID_VERSION and /opt/torch-matrix present"
