"""Pure analyses of recorded arrays: numpy in, numbers and dataclasses out; no file I/O, no torch.

Manifold tuning (Wang & Ponce, Cell Reports 2022): :mod:`.sphere` builds the PCA spheres and grids,
:mod:`.kent` fits a map with the Kent function, :mod:`.statistics` tests and bounds it (ANOVA, noise ceiling).
"""

from latentopt.analysis.kent import KentFit, fit_kent, kent_basis, kent_function
from latentopt.analysis.sphere import (
    SphereBases,
    average_poles,
    grid_angles,
    grid_directions,
    pca_sphere_bases,
    sphere_codes,
)
from latentopt.analysis.statistics import (
    AnovaResult,
    anova_oneway,
    noise_ceiling_r2,
    split_half_correlations,
    split_half_reliability,
)

__all__ = [
    "AnovaResult",
    "KentFit",
    "SphereBases",
    "anova_oneway",
    "average_poles",
    "fit_kent",
    "grid_angles",
    "grid_directions",
    "kent_basis",
    "kent_function",
    "noise_ceiling_r2",
    "pca_sphere_bases",
    "sphere_codes",
    "split_half_correlations",
    "split_half_reliability",
]
