"""Run latentopt's console scripts as a user does, for the benchmarks that chain commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def console_script(name: str) -> str:
    """The console script ``name`` of this Python's environment (else whatever is on PATH)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def run_step(command: list[str]) -> tuple[str, float]:
    """Run one command, echoing it and its last output line; ``(last line, seconds)``. Exits on failure."""
    print("$ " + " ".join(command), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"  {last}  ({elapsed:.0f} s)", flush=True)
    return last, elapsed
