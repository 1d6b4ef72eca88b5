"""Squared image distances for the metric of a generator's code space (:mod:`latentopt.geometry`).

Each takes two image batches ``(n, 3, H, W)`` float32 RGB in [0, 1] and returns ``(n,)`` squared
distances: pixel MSE, a perceptual LPIPS-like distance on the in-silico backbone's features, and LPIPS
itself when the ``lpips`` package is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from latentopt.checks import ConfigError, integer
from latentopt.runtime import resolve_device

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Two image batches ``(n, 3, H, W)`` float32 RGB in [0, 1] -> ``(n,)`` squared distances, 0 for
identical images. A distance may also have ``residuals(images) -> (n, F)`` with ``D(a, b) =
‖r(a) − r(b)‖²``, which makes its autograd HVPs cheaper (:func:`latentopt.geometry.hvp`)."""


def pixel_mse(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Mean over the ``P = 3 H W`` pixel values of the squared difference: ``(n,)``.

    With this normalisation a generator linear in its code, ``images = J z + b``, has the Hessian
    ``H = 2 JᵀJ / P`` (and any generator has it at ``z0`` with ``J`` its Jacobian there).
    """
    return (images_a - images_b).pow(2).flatten(1).mean(1)


# Last block of EfficientNet-Lite0's stages 1, 2, 3, 4 and 6: maps of 112, 56, 28, 14 and 7 px at
# the 224 px input, one per resolution as LPIPS reads one ReLU per AlexNet stage (Zhang et al. 2018).
PERCEPTUAL_BLOCKS = (0, 2, 4, 7, 14)


class PerceptualDistance:
    """LPIPS-like, not LPIPS: a perceptual squared distance on the in-silico backbone's features.

    ``D(a, b) = Σ_l mean_{h,w} Σ_c (φ̂_l(a) − φ̂_l(b))²`` where ``φ_l`` is the output of block ``l``
    of EfficientNet-Lite0 (ImageNet weights, the in-silico monkey's network, preprocessed as its
    subject does: 224 px, [-1, 1]) and ``φ̂ = φ / (‖φ‖_c + 1e-10)`` is unit-normalised over channels
    at each position. LPIPS (Zhang et al. 2018) has the same form on AlexNet/SqueezeNet/VGG features
    with weights per channel learned on human judgements; here every channel weighs 1.

    Args:
        blocks: indices of the blocks read (``_blocks.<i>``, 0-15).
        device: torch device of the network (use the generator's).
        weights: state-dict file; default the packaged ImageNet weights (loaded strictly).
    """

    name = "perceptual"

    def __init__(self, *, blocks: Sequence[int] = PERCEPTUAL_BLOCKS, device: str | torch.device = "cpu",
                 weights: str | None = None) -> None:
        from latentopt.builtins.subjects import load_efficientnet_lite0

        self.device = resolve_device(device)
        model = load_efficientnet_lite0(weights)
        self._stages: torch.nn.ModuleList = model._blocks  # type: ignore[assignment]
        self.blocks = tuple(integer(b, "distance.blocks", minimum=0, maximum=len(self._stages) - 1) for b in blocks)
        if not self.blocks:
            raise ConfigError("distance.blocks: give at least one block")
        self.model = model.to(self.device).to(memory_format=torch.channels_last).requires_grad_(False)  # type: ignore[call-overload]

    def residuals(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` RGB in [0, 1] -> ``(n, F)``: each block's unit-normalised map divided by
        ``√(H_l W_l)`` and flattened, so that ``D(a, b) = ‖r(a) − r(b)‖²``."""
        from latentopt.builtins.subjects import preprocess_images

        model = self.model
        x = model._swish(model._bn0(model._conv_stem(preprocess_images(images, self.device))))
        parts = []
        for index, block in enumerate(self._stages[: max(self.blocks) + 1]):
            x = block(x)
            if index in self.blocks:
                unit = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                parts.append(unit.flatten(1) / math.sqrt(x.shape[2] * x.shape[3]))
        return torch.cat(parts, 1)

    def __call__(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        n = images_a.shape[0]
        r = self.residuals(torch.cat([images_a, images_b.to(images_a.device)]))
        return (r[:n] - r[n:]).pow(2).sum(1)


class LpipsDistance:
    """LPIPS (Zhang et al. 2018) from the optional ``lpips`` package, the distance of Wang & Ponce's
    code (SqueezeNet). Its value, a weighted sum of squared feature differences, is used as ``D``.
    The package ships its linear weights; torchvision fetches the backbone's on first use."""

    name = "lpips"

    def __init__(self, *, net: str = "squeeze", device: str | torch.device = "cpu") -> None:
        try:
            import lpips  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError("distance: 'lpips' needs the lpips package, which is not installed") from None
        self.model = lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)

    def __call__(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        return self.model(images_a, images_b, normalize=True).reshape(-1)


def distance_by_name(name: str, device: str | torch.device = "cpu") -> Distance:
    """``"mse"`` (:func:`pixel_mse`), ``"perceptual"`` (:class:`PerceptualDistance`) or ``"lpips"``.

    Raises:
        ConfigError: naming the key ``distance`` for an unknown name or a missing package.
    """
    if name == "mse":
        return pixel_mse
    if name == "perceptual":
        return PerceptualDistance(device=device)
    if name == "lpips":
        return LpipsDistance(device=device)
    raise ConfigError(f"distance: unknown distance {name!r}; known: mse, perceptual, lpips")


def distance_name(distance: Distance) -> str:
    """The name recorded in provenance: ``distance.name``, else the function's name."""
    return str(getattr(distance, "name", getattr(distance, "__name__", type(distance).__name__)))
