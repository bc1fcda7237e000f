#!/usr/bin/env bash
# README command 1: install (idempotent), then the main job on the embedded default world:
# world + models, the attribution model, DareU and the baselines, one comparison table.
#   bash scripts/demo.sh            the default world (runs/demo)
#   bash scripts/demo.sh --fast     the tiny world, short runs (runs/demo-fast)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/dareu demo "$@"
