#!/usr/bin/env bash
# Set up neuralworld in ./.venv: system packages for headless rendering and browser tests
# (when run as root on Debian), the Python package, and the browser runtime from npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for p in chromium libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libgbm1; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  command -v npm >/dev/null || need="$need npm"  # fetches ONNX Runtime Web (scripts/fetch-web-runtime.sh)
  if [ -n "$need" ]; then
    echo "installing system packages:$need"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch is pinned in pyproject.toml, so pip takes the CPU build and no CUDA packages
.venv/bin/pip install -q -e ".[test]"
if [ -f scripts/fetch-web-runtime.sh ]; then bash scripts/fetch-web-runtime.sh; fi
