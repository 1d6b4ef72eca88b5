#!/usr/bin/env bash
# Set up latentopt in ./.venv on a fresh machine: Debian's tcmalloc allocator (torch is 2.7-5.7x
# slower on 2-core CPUs without it), the CPU build of torch, latentopt with its first-party plugins
# and the development tools, and the example generator plugin as a separate distribution.
# Idempotent: run it again after pulling.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${LATENTOPT_TORCH_VERSION:-2.13.0}
quiet() { "$@" 2>&1 | { grep -vE "is ignored: it is neither|^$" || true; }; return "${PIPESTATUS[0]}"; }

if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libtcmalloc-minimal4; } >/dev/null 2>&1; then
      echo "setup: could not install libtcmalloc-minimal4 (no root?); latentopt runs, but torch is slower" >&2
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned: an unpinned torch lets pip pick a multi-GB CUDA build on this machine.
quiet .venv/bin/pip install -q "torch==${TORCH_VERSION}"
quiet .venv/bin/pip install -q -e ".[dev]"
if [ -d examples/latentopt-example-generator ]; then
  quiet .venv/bin/pip install -q ./examples/latentopt-example-generator
fi
echo "setup: done (.venv). Run the default evolution: .venv/bin/latentopt"
