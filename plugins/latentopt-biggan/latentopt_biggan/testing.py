"""Random-weight BigGAN-deep models for tests, written like the published ones and NaN-free.

A freshly built ``BigGAN`` returns NaN: its final batch norm's weight and bias are uninitialised
memory (``torch.Tensor(n)``), and its spectral-norm vectors ``u``, ``v`` are random, so eval-mode
forwards (which never iterate them) divide by a poor estimate of the largest singular value and the
activations blow up. :func:`random_model` initialises the one and power-iterates the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

# Layer tables (up-sample?, in x ch, out x ch) of the published models, as in their config.json.
OFFICIAL_LAYERS: dict[int, list[tuple[bool, int, int]]] = {
    128: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4),
          (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    256: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
          (False, 8, 4), (True, 4, 4), (False, 4, 2), (True, 2, 2), (False, 2, 1), (True, 1, 1)],
    512: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
          (False, 8, 4), (True, 4, 4), (False, 4, 2), (True, 2, 2), (False, 2, 1), (True, 1, 1),
          (False, 1, 1), (True, 1, 1)],
}


def official_config(resolution: int) -> dict[str, Any]:
    """The config.json of ``biggan-deep-<resolution>`` (channel width 128, attention at 64x64)."""
    return {"output_dim": resolution, "z_dim": 128, "class_embed_dim": 128, "channel_width": 128,
            "num_classes": 1000, "layers": OFFICIAL_LAYERS[resolution], "attention_layer_position": 8,
            "eps": 1e-4, "n_stats": 51}


def tiny_config(resolution: int = 128) -> dict[str, Any]:
    """The published architecture at channel width 4: every key of the real model, ~1/1000 of the work."""
    return {**official_config(resolution), "channel_width": 4}


TINY_CONFIG = tiny_config(128)


def random_model(config: dict[str, Any], *, seed: int = 0, power_iterations: int = 30) -> Any:
    """A NaN-free random ``BigGAN`` for ``config`` (final batch norm set, spectral norm iterated)."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    from torch.nn.utils.spectral_norm import SpectralNorm

    torch.manual_seed(seed)
    model = BigGAN(BigGANConfig.from_dict(config)).eval()
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        for module in model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, SpectralNorm):
                    for _ in range(power_iterations):
                        hook.compute_weight(module, do_power_iteration=True)
        # per-truncation statistics: distinct rows, so a wrong row choice shows in the images
        for name, buffer in model.named_buffers():
            if name.endswith("running_means"):
                buffer.copy_(0.05 * torch.randn_like(buffer))
            elif name.endswith("running_vars"):
                buffer.copy_(1.0 + 0.1 * torch.rand_like(buffer))
    return model


def write_model(folder: str | os.PathLike[str], model: Any) -> Path:
    """Write ``config.json`` and ``pytorch_model.bin`` like the published files; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(model.config.to_json_string())
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def write_random_model(folder: str | os.PathLike[str], config: dict[str, Any], *, seed: int = 0) -> Path:
    """:func:`random_model` written to ``folder``."""
    return write_model(folder, random_model(config, seed=seed))
