#!/usr/bin/env bash
# Build and cache llama.cpp's llama-server; the same as `specfair backends install llamacpp`.
# See src/specfair/backends/install_llamacpp.sh for what it does and its settings.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PYTHON="$PYTHON" exec bash src/specfair/backends/install_llamacpp.sh "$@"
