"""Process-level settings: device choice, torch threads, and the tcmalloc allocator.

On the 2-core CPU machines this project is tested on, glibc's allocator makes torch 2.7-5.7x slower
than tcmalloc (measured). The console scripts therefore re-execute themselves once with tcmalloc
preloaded when Debian's ``libtcmalloc-minimal4`` is installed (``scripts/setup.sh`` installs it).
Set ``LATENTOPT_TCMALLOC=0`` to opt out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def find_tcmalloc() -> str | None:
    """Path of tcmalloc-minimal when installed, else None."""
    for candidate in TCMALLOC_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def tcmalloc_loaded() -> bool:
    return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def maybe_reexec_with_tcmalloc() -> None:
    """Re-execute the current command with tcmalloc preloaded, once, if available."""
    if os.environ.get("LATENTOPT_TCMALLOC", "1") == "0" or tcmalloc_loaded():
        return
    if sys.platform != "linux" or os.environ.get("_LATENTOPT_REEXEC"):
        return  # never loop: one attempt per process tree
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env["_LATENTOPT_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    import torch

    from latentopt.checks import ConfigError

    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ConfigError(f"device: {device!r} is not a torch device ('auto', 'cpu', 'cuda')")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device: {device!r} is not a torch device ('auto', 'cpu', 'cuda')") from err
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: {device!r} is not one of 'auto', 'cpu', 'cuda[:N]', 'mps'")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: {device!r} requested but MPS is not available here")
    return resolved


def runtime_info() -> dict[str, object]:
    """Allocator, threads and device facts recorded with every run (they change timings)."""
    import torch

    return {"tcmalloc": tcmalloc_loaded(), "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
