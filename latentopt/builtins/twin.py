"""The subject ``twin``: a digital twin of recorded channels (:mod:`latentopt.twin`) as a differentiable Subject."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentopt.builtins.noise import NoiseModel, make_noise
from latentopt.checks import ConfigError
from latentopt.plugins import hookimpl
from latentopt.subject import Subject
from latentopt.twin.model import NPZ_FILE, load_twin
from latentopt.weights import sha256_file


class TwinSubject(Subject):
    """Responses of a fitted twin (frozen EfficientNet-Lite0 layers + linear readout), optionally noisy.

    Args:
        path: the twin folder (``twin.json`` + ``readout.npz``, from :func:`latentopt.twin.model.save_twin`).
        channels: null (all the twin's channels) or a list of channel names or indices into them.
        noise: ``{kind: none|multiplicative|poisson, level: s, gain: g}`` applied by :meth:`respond`.
        weights: the backbone's state-dict file; its SHA-256 must match the twin's record.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass; None = 10 on the CPU, 40 on CUDA.
    """

    differentiable = True

    def __init__(self, *, path: str | None = None, channels: Sequence[int | str] | None = None,
                 noise: dict | NoiseModel | None = None, weights: str | None = None, device: str = "auto",
                 batch_size: int | None = None) -> None:
        if path is None or path == "???" or (isinstance(path, str) and not path.strip()):
            raise ConfigError("subject.path: give the twin folder (written by save_twin / latentopt-twin fit)")
        self.path = Path(str(path)).expanduser()
        self.noise = make_noise(noise)
        self._cleanup: Path | None = None
        self.twin = load_twin(self.path, device=device, weights=weights, batch_size=batch_size)
        self.device = self.twin.backbone.device
        self.readout_sha256 = sha256_file(self.path / NPZ_FILE)
        names = self.twin.channel_names
        if channels is not None:
            self.twin.subset(self._indices(channels, names))
        self.channels = None if channels is None else list(self.twin.channel_names)
        self.channel_names = list(self.twin.channel_names)

    @staticmethod
    def _indices(channels: Any, names: list[str]) -> list[int]:
        if isinstance(channels, (str, int)) or not hasattr(channels, "__iter__"):
            raise ConfigError(f"subject.channels: null or a list of channel names or indices, got {channels!r}")
        out = []
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, (int, str)):
                raise ConfigError(f"subject.channels: {c!r} is neither a channel name nor an index")
            if isinstance(c, int):
                if not 0 <= c < len(names):
                    raise ConfigError(f"subject.channels: index {c} out of range for the twin's {len(names)} channels")
                out.append(c)
            elif c in names:
                out.append(names.index(c))
            else:
                raise ConfigError(f"subject.channels: the twin has no channel {c!r} (it has {', '.join(names[:8])}"
                                  f"{'...' if len(names) > 8 else ''})")
        if not out:
            raise ConfigError("subject.channels: give at least one channel (or null for all)")
        if len(set(out)) != len(out):
            raise ConfigError("subject.channels: a channel is named twice")
        return out

    @classmethod
    def contract_instance(cls) -> TwinSubject:
        """A tiny twin (V1 avg features of 12 random images, 3 synthetic channels) fitted into a temp folder."""
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="latentopt-twin-contract-"))
        make_tiny_twin(folder / "twin")
        subject = cls(path=str(folder / "twin"), channels=["ch0", 2], noise={"kind": "multiplicative", "level": 0.2},
                      device="cpu")
        subject._cleanup = folder
        return subject

    def respond_torch(self, images: torch.Tensor) -> torch.Tensor:
        return self.twin.respond_torch(images)

    def respond(self, images: torch.Tensor, *, image_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        with torch.inference_mode():
            clean = self.respond_torch(images).double().cpu().numpy()
        return self.noise.apply(clean, rng)

    def provenance(self) -> dict[str, Any]:
        meta = self.twin.meta
        return {**super().provenance(), "path": str(self.path.resolve()), "twin_sha256": self.readout_sha256,
                "channels": self.channels, "channel_names": self.channel_names, "layers": list(meta.get("layers", [])),
                "pooling": meta.get("pooling"), "method": meta.get("method"),
                "backbone_weights_sha256": meta.get("backbone", {}).get("weights_sha256"),
                "noise": self.noise.__dict__}

    def close(self) -> None:
        self.twin.close()
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None


def make_tiny_twin(folder: Path, *, n_images: int = 12, n_channels: int = 3, seed: int = 0) -> Path:
    """Fit and save a small twin for tests: V1 avg features of random images, known random readout channels."""
    from latentopt.twin.features import Backbone
    from latentopt.twin.fit import ridge_cv
    from latentopt.twin.model import save_twin

    backbone = Backbone("V1", device="cpu")
    try:
        images = torch.rand(n_images, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        X = backbone.pooled_numpy(images, "avg").astype(np.float64)
    finally:
        backbone.close()
    rng = np.random.default_rng(seed)
    Y = X @ rng.standard_normal((X.shape[1], n_channels)) + 5.0
    fit = ridge_cv(X, Y, np.arange(n_images), folds=3)
    return save_twin(folder, fit, layers=backbone.layers, pooling="avg", grid=2,
                     channel_names=[f"ch{c}" for c in range(n_channels)], weights_sha256=backbone.weights_sha256,
                     provenance={"source": "make_tiny_twin", "n_images": n_images, "seed": seed})


@hookimpl
def latentopt_register_subjects(register: Any) -> None:
    register("twin", TwinSubject)
