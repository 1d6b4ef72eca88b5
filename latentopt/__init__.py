"""latentopt: closed-loop image evolution for visual neuroscience."""

__version__ = "0.1.0"

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
