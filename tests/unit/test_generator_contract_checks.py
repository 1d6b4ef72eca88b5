"""check_generator also asks for images in [0, 1] far from the initial codes and at a generator's declared bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentopt.generator import FixedSubspace, Generator
from latentopt.testing import EXTREME_NORM_FACTORS, check_generator, extreme_codes


class LinearGrey(Generator):
    """Grey images of brightness ``0.5 + slope * code[0]`` (or the code's mean): in [0, 1] near the initial codes
    only, unless clamped."""

    def __init__(self, *, slope: float = 0.1, clamp: bool = False, mean: bool = False,
                 code_bounds: tuple[float, float] | None = None) -> None:
        self.latent_dim, self.image_size, self.slope, self.clamp, self.mean = 8, (4, 4), slope, clamp, mean
        self.code_bounds = code_bounds

    def _generate(self, codes: torch.Tensor) -> torch.Tensor:
        brightness = 0.5 + self.slope * (codes.mean(1, keepdim=True) if self.mean else codes[:, :1])
        if self.clamp:
            brightness = brightness.clamp(0.0, 1.0)
        return brightness[:, :, None, None].expand(-1, 3, *self.image_size).contiguous()


def test_initial_codes_alone_would_pass_the_bad_generator():
    generator = LinearGrey()
    codes = generator.initial_codes(3, rng=np.random.default_rng(0))
    images = generator.generate(codes)
    assert images.min() >= 0 and images.max() <= 1  # what the check saw before: three small codes


def test_a_generator_leaving_the_range_at_large_codes_is_caught_with_a_clear_message():
    with pytest.raises(AssertionError, match=r"LinearGrey: images must lie in \[0, 1\] also at codes of 10 x the "
                                             r"initial codes' norm \(\|code\| = [0-9.]+\); got values in .*clamp"):
        check_generator(LinearGrey())


def test_a_clamped_generator_passes():
    check_generator(LinearGrey(clamp=True))


def test_declared_bounds_are_tried_at_their_corners():
    # the scaled codes are clipped into the box, where their mean stays small: only the all-high and all-low
    # corners reach brightness 0.5 +- 0.3 * 2
    generator = LinearGrey(slope=0.3, mean=True, code_bounds=(-2.0, 2.0))
    cases = extreme_codes(generator, generator.initial_codes(3, rng=np.random.default_rng(0)))
    assert len(cases) == len(EXTREME_NORM_FACTORS) + 1
    assert all(np.abs(codes).max() <= 2 and codes.dtype == np.float32 for codes in cases.values())
    with pytest.raises(AssertionError, match=r"at codes of the corners of code_bounds \(-2, 2\); got values in "
                                             r"\[-0.1, 1.1\]"):
        check_generator(generator)
    check_generator(LinearGrey(slope=0.25, mean=True, code_bounds=(-2.0, 2.0)))  # 0.5 +- 0.5: in range


def test_a_sub_space_keeps_its_bases_bounds():
    base = LinearGrey(clamp=True, code_bounds=(-1.0, 1.0))
    sub = FixedSubspace(base, free=[0, 1], fixed=np.zeros(8, np.float32))
    assert sub.code_bounds == (-1.0, 1.0)
    check_generator(sub)
