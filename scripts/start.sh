#!/usr/bin/env bash
# Set up, then start the chat app on the default corpus (the index is built on first start).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
exec rag serve "$@"
