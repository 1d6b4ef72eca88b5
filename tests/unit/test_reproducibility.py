"""The same computation gives the same bits in every process (MKL's alignment-dependent paths are off)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# One white-box gradient of the analytic V1 cell through the Fourier generator: an MKL matrix product
# (the Gabor projection) whose last bits, without MKL_CBWR, depend on where the allocator put the arrays
# (seen here: 2 distinct results in 12 processes under tcmalloc; 1 in 16 with it set).
_GRADIENT = """
import hashlib, numpy as np, torch
import latentopt
from latentopt.builtins.generators import FourierGenerator
from latentopt.builtins.subjects import GaborV1Subject
g, s = FourierGenerator(device="cpu"), GaborV1Subject(device="cpu")
codes = torch.tensor(g.initial_codes(4, rng=np.random.default_rng(0)), requires_grad=True)
s.respond_torch(g.generate(codes)).sum().backward()
print(hashlib.sha256(codes.grad.numpy().tobytes()).hexdigest())
"""


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"} | env
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_importing_latentopt_turns_on_mkl_reproducibility_unless_the_user_chose() -> None:
    show = "import os, latentopt; print(os.environ['MKL_CBWR'])"
    assert _run(show) == "COMPATIBLE"
    assert _run(show, MKL_CBWR="AVX2") == "AVX2"


@pytest.mark.slow
def test_a_white_box_gradient_is_the_same_to_the_bit_in_every_process() -> None:
    hashes = {_run(_GRADIENT) for _ in range(8)}
    assert len(hashes) == 1, f"{len(hashes)} different gradients from 8 identical processes"
