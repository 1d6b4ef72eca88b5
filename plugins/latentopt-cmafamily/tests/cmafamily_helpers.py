"""Helpers of the plugin's tests: factories of every optimizer on small problems with known optima, state round trips.

A plain module (imported as ``cmafamily_helpers``: the test folder is not a package), so that the fixtures in
``conftest.py`` and the test modules share it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.optimizer import Optimizer
from latentopt_cmafamily import OPTIMIZERS

Factory = Callable[..., Optimizer]


def hessian_basis(dim: int, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random orthonormal ``(dim, rank)`` basis and a decaying spectrum ``(rank,)``."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, rank)))
    return basis, np.logspace(0, -2, rank)


def make_factory(name: str, **fixed: Any) -> Factory:
    """``factory(initial_codes, seed=..., **kw)`` for a registered name, with problem-sized settings."""

    def factory(initial_codes: np.ndarray, *, seed: int = 0, **kw: Any) -> Optimizer:
        dim = np.shape(initial_codes)[1]
        extra: dict[str, Any] = dict(fixed)
        if name == "hessian_cma" and "metric" not in kw and "eigvecs" not in extra:
            basis, spectrum = hessian_basis(dim, min(dim, 32))
            extra.update(eigvecs=basis, eigvals=spectrum, exponent=0.0)
        optimizer = OPTIMIZERS[name](initial_codes, seed=seed, **{**extra, **kw})
        if optimizer.needs_white_box:  # gradient ascent: a differentiable neuron (tests may attach their own)
            optimizer.attach_white_box(torch_quadratic(np.full(dim, 0.5)))
        return optimizer

    return factory


def torch_quadratic(target: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """The white-box form of ``-|code - target|^2``: torch codes ``(n, d)`` -> scores ``(n,)``."""
    goal = torch.as_tensor(target, dtype=torch.float32)
    return lambda codes: -((codes - goal) ** 2).sum(1)


def initial_codes(n: int = 12, dim: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def flatten(state: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested state -> flat ``{"a/b": array}`` (None values are left out, as records do)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif value is not None:
            flat[f"{prefix}{key}"] = np.asarray(value)
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in flat.items():
        node = state
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return state


def npz_round_trip(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """Save a state to ``.npz`` and load it back with ``allow_pickle=False``, as run records do."""
    np.savez(path, allow_pickle=False, **flatten(state))
    with np.load(path, allow_pickle=False) as data:
        return unflatten({key: data[key] for key in data.files})
