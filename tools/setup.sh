#!/usr/bin/env bash
# One-time machine set-up: installs what a clean Debian bookworm machine lacks, and nothing when it
# is already there. The Python environment itself is built by Bazel (//tools/bazel:python_env.bzl).
#   tools/setup.sh          what `make report` needs: Bazel (and rules_java), Python
#   tools/setup.sh --test   also what the tools' own tests need: Chromium and chromedriver
set -euo pipefail

need=()
command -v bazel >/dev/null 2>&1 || need+=(bazel-bootstrap)
[ -d /usr/share/bazel/rules/java ] || need+=(bazel-rules-java)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
# The HTML report's end-to-end test drives Debian's chromium through chromedriver.
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "setup: what this machine needs is already present"
fi
