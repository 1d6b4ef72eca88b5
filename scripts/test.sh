#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LD_PRELOAD="$(ldconfig -p 2>/dev/null | awk '/libtcmalloc_minimal.so.4 /{print $NF; exit}')${LD_PRELOAD:+:$LD_PRELOAD}"
.venv/bin/ruff check latentopt plugins
.venv/bin/mypy latentopt plugins
.venv/bin/python -m pytest "$@"
