#!/usr/bin/env bash
# README command 1: install (idempotent) and run the main job on the embedded default world.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/dareu prepare --out "${DAREU_OUT:-runs/world}" "$@"
