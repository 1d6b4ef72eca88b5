#!/usr/bin/env bash
# Set up latentopt in ./.venv on a fresh machine: Debian's tcmalloc allocator (torch is 2.7-5.7x
# slower on 2-core CPUs without it), the CPU build of torch, latentopt (the core) with the development
# tools, its first-party plugins (each its own distribution in plugins/latentopt-<name>, editable), and
# the example generator plugin, and Debian's chromium + chromedriver for the tests of pages. Idempotent:
# run it again after pulling.
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

# Debian's chromium and chromedriver: the tests of the report page and the live view open them headless
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1; then
      echo "setup: could not install chromium and chromium-driver (no root?); the browser tests will fail" >&2
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned: an unpinned torch lets pip pick a multi-GB CUDA build on this machine.
quiet .venv/bin/pip install -q "torch==${TORCH_VERSION}"
# the core and every first-party plugin in one resolver run; torch is named again so that nothing can replace it
PLUGINS=()
for plugin in plugins/latentopt-*/; do
  if [ -f "${plugin}pyproject.toml" ]; then PLUGINS+=(-e "${plugin%/}[test]"); fi
done
quiet .venv/bin/pip install -q "torch==${TORCH_VERSION}" -e ".[dev]" "${PLUGINS[@]}"
if [ -d examples/latentopt-example-generator ]; then
  quiet .venv/bin/pip install -q ./examples/latentopt-example-generator
fi
echo "setup: done (.venv). Run the default evolution: .venv/bin/latentopt"
