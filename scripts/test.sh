#!/usr/bin/env bash
# Set up (including test tools and chromium), then run the whole test suite and the eval gate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest "$@"
