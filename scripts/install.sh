#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv, torch 2.13.0 first (so pip never pulls a CUDA build),
# then DareU and everything else under constraints.txt. Re-running is a no-op while nothing changed.
#   scripts/install.sh          runtime packages
#   scripts/install.sh --dev    plus the test tools
#   scripts/install.sh --vllm   plus vLLM (GPU machines only)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev" ;;
    --vllm) extras="${extras:+$extras,}vllm" ;;
    *) echo "install.sh: unknown option $arg (use --dev or --vllm)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.dareu-install-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${extras:-base}"
if [ -f "$stamp" ]; then exit 0; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
touch "$stamp"
echo "install: .venv ready (${extras:-base})"
