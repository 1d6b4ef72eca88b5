"""latentopt: closed-loop image evolution for visual neuroscience."""

__version__ = "0.1.0"

import os as _os

# Intel MKL (torch's CPU BLAS) picks its code path by the memory alignment of each array, which
# varies from process to process: the same seed then gives results that differ in the last bits,
# and a gradient step or a resumed run can drift from an uninterrupted one. Its conditional
# numerical reproducibility mode removes that at no measurable cost here; a value the user set wins.
# MKL reads the variable at its first call, so this must come before any torch computation.
_os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

from latentopt.errors import LatentoptError
from latentopt.experiments.manifold_report import ManifoldRecord, load_manifold
from latentopt.generator import FixedSubspace, Generator
from latentopt.objective import Objective
from latentopt.optimizer import Optimizer, OptimizerError
from latentopt.run_record import RunRecord, load_run
from latentopt.subject import Subject

__all__ = [
    "FixedSubspace",
    "Generator",
    "LatentoptError",
    "ManifoldRecord",
    "Objective",
    "Optimizer",
    "OptimizerError",
    "RunRecord",
    "Subject",
    "__version__",
    "load_manifold",
    "load_run",
]
