"""Trial-to-trial noise models for simulated neurons.

* ``none``: the noise-free response.
* ``multiplicative``: ``r * max(0, 1 + s * N(0, 1))``, the GECCO 2022 benchmark's model
  (Wang & Ponce 2022), with ``s`` = ``level`` (0, 0.2, 0.5 in that benchmark).
* ``poisson``: spike counts ``Poisson(gain * max(r, 0))`` with ``gain`` spikes per unit of response.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentopt.checks import ConfigError, finite_number

NOISE_KINDS = ("none", "multiplicative", "poisson")


@dataclass(frozen=True)
class NoiseModel:
    """A noise model; see the module docstring for the kinds."""

    kind: str = "none"
    level: float = 0.0
    gain: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ConfigError(f"subject.noise.kind must be one of {NOISE_KINDS}, got {self.kind!r}")
        finite_number(self.level, "subject.noise.level", minimum=0.0, inclusive=True)
        finite_number(self.gain, "subject.noise.gain", minimum=0.0)

    def apply(self, responses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of ``responses`` (any shape), float64."""
        r = np.asarray(responses, dtype=np.float64)
        if self.kind == "multiplicative":
            return r * np.maximum(0.0, 1.0 + self.level * rng.standard_normal(r.shape))
        if self.kind == "poisson":
            return rng.poisson(self.gain * np.maximum(r, 0.0)).astype(np.float64)
        return r.copy()


def make_noise(noise: dict | NoiseModel | None) -> NoiseModel:
    """Build a NoiseModel from a config mapping like ``{kind: multiplicative, level: 0.2}``."""
    if noise is None:
        return NoiseModel()
    if isinstance(noise, NoiseModel):
        return noise
    if not isinstance(noise, dict):
        raise ConfigError(f"subject.noise must be a mapping {{kind, level, gain}}, got {noise!r}")
    unknown = set(noise) - {"kind", "level", "gain"}
    if unknown:
        raise ConfigError(f"subject.noise: unknown key(s) {sorted(unknown)}; use kind, level, gain")
    return NoiseModel(
        kind=str(noise.get("kind", "none")),
        level=finite_number(noise.get("level", 0.0), "subject.noise.level", minimum=0.0, inclusive=True),
        gain=finite_number(noise.get("gain", 1.0), "subject.noise.gain", minimum=0.0),
    )
