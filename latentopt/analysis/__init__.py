"""Pure analyses of recorded arrays: numpy in, numbers and dataclasses out; no file I/O, no torch.

Manifold tuning (Wang & Ponce, Cell Reports 2022): :mod:`.sphere` builds the PCA spheres and grids,
:mod:`.kent` fits a map with the Kent function, :mod:`.statistics` tests and bounds it (ANOVA, noise ceiling).
Tuning along the generator's Hessian eigenvectors (Wang & Ponce, ICLR 2021): :mod:`.axis_tuning` tests, fits
(Gaussian and linear) and classifies one curve (bell-shaped, monotonic, flat).
Paired-generator alignment (Wang & Ponce, Nature Neuroscience 2026): :mod:`.alignment` tests and tabulates the
sessions' threads (success, normalised trajectories, time constants, areas), :mod:`.alignment_dynamics` compares
the generators per block and per time bin.
"""

from latentopt.analysis.alignment import (
    SuccessResult,
    ThreadSummary,
    area_table,
    benjamini_hochberg,
    clopper_pearson,
    drop_short_last_block,
    evoked_trials,
    normalised_trajectories,
    paired_t,
    session_summary,
    thread_success,
    time_constant,
)
from latentopt.analysis.alignment_dynamics import (
    Attribution,
    bin_trajectories,
    per_block_paired_tests,
    rebinned_edges,
    temporal_attribution,
    universal_normaliser,
)
from latentopt.analysis.axis_tuning import GaussianFit, LinearFit, analyze_axis, fit_gaussian, fit_linear
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
    "Attribution",
    "GaussianFit",
    "KentFit",
    "LinearFit",
    "SphereBases",
    "SuccessResult",
    "ThreadSummary",
    "analyze_axis",
    "anova_oneway",
    "area_table",
    "average_poles",
    "benjamini_hochberg",
    "bin_trajectories",
    "clopper_pearson",
    "drop_short_last_block",
    "evoked_trials",
    "fit_gaussian",
    "fit_kent",
    "fit_linear",
    "grid_angles",
    "grid_directions",
    "kent_basis",
    "kent_function",
    "noise_ceiling_r2",
    "normalised_trajectories",
    "paired_t",
    "pca_sphere_bases",
    "per_block_paired_tests",
    "rebinned_edges",
    "session_summary",
    "sphere_codes",
    "split_half_correlations",
    "split_half_reliability",
    "temporal_attribution",
    "thread_success",
    "time_constant",
    "universal_normaliser",
]
