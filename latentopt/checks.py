"""Argument checks shared by the components: a bad value is a :class:`ConfigError` naming its key.

Components raise :class:`ConfigError` (a ``ValueError``) for a user's value, so the CLI can print it
as one line while any other exception stays a bug with its traceback.
"""

from __future__ import annotations

import math
from typing import Any

from latentopt.errors import LatentoptError


class ConfigError(LatentoptError, ValueError):
    """A configuration value is unusable; the message names the key."""


def finite_number(value: Any, key: str, *, minimum: float | None = None, inclusive: bool = False) -> float:
    """``value`` as a finite float, above ``minimum`` (``>``; ``>=`` when ``inclusive``).

    Raises:
        ConfigError: naming ``key`` when the value is not a number, NaN, infinite or too small.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a finite number, got {value!r}") from None
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if minimum is not None and (number < minimum if inclusive else number <= minimum):
        raise ConfigError(f"{key} must be {'>=' if inclusive else '>'} {minimum:g}, got {value!r}")
    return number


def integer(value: Any, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (a bool, float or string is refused).

    Raises:
        ConfigError: naming ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            bound = f"in [{minimum}, {maximum}]"
        else:
            bound = f">= {minimum}" if minimum is not None else f"<= {maximum}"
        raise ConfigError(f"{key} must be {bound}, got {value!r}")
    return value


def boolean(value: Any, key: str) -> bool:
    """``value`` if it is a bool (``true``/``false`` in YAML), else a ConfigError naming ``key``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def non_finite_key(data: Any, key: str) -> str | None:
    """The dotted key of the first NaN or infinite float inside ``data`` (nested dicts/lists), or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return key
    if isinstance(data, dict):
        for k, v in data.items():
            found = non_finite_key(v, f"{key}.{k}")
            if found:
                return found
    if isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found = non_finite_key(v, f"{key}[{i}]")
            if found:
                return found
    return None


def parent_count(mu: Any, population: int, key: str = "optimizer.mu") -> int | None:
    """``mu`` (parents per generation) checked against the population: ``1 <= mu <= population``; None passes."""
    if mu is None:
        return None
    return integer(mu, key, minimum=1, maximum=population)


MIN_IMAGE_SIZE = 16
"""Smallest generator image side (px): below it a CNN subject upsamples a few pixels into 224 x 224."""

MAX_IMAGE_SIZE = 4096


def image_side(value: Any, key: str = "generator.image_size") -> int:
    """A square image side in pixels, ``MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE``."""
    return integer(value, key, minimum=MIN_IMAGE_SIZE, maximum=MAX_IMAGE_SIZE)
