"""Which recorded channels a rig subject returns, and which cortical area each channel is in.

A bad ``subject.channels``, ``subject.area`` or ``subject.channel_areas`` is a
:class:`~latentopt.checks.ConfigError` naming the key.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from latentopt.checks import ConfigError, integer

COMBINE = ("separate", "mean")


def load_area_table(path: str | Path) -> dict[int, str]:
    """Read a channel -> area table.

    Args:
        path: CSV with header ``channel,area`` and one row per array channel; ``channel`` is the
            0-based column of the channel in the response files (``tEvokedResp(:, channel + 1)``
            in MATLAB), ``area`` a name such as V1, V4, PIT.

    Returns:
        channel index -> area name.

    Raises:
        ConfigError: naming ``subject.channel_areas``: no such file, no header, a row that is not
            ``<index>,<area>``, a negative or repeated channel.
    """
    key = "subject.channel_areas"
    if isinstance(path, bool) or not isinstance(path, (str, Path)):  # open(3) would read file descriptor 3
        raise ConfigError(f"{key} must be the path of a CSV file, got {path!r}")
    try:
        with open(path, newline="") as handle:
            return _area_rows(csv.DictReader(handle), path)
    except FileNotFoundError:
        raise ConfigError(f"{key}: no file at {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{key}: cannot read {path} ({err})") from None


def _area_rows(reader: csv.DictReader[str], path: str | Path) -> dict[int, str]:
    key = "subject.channel_areas"
    if reader.fieldnames is None or not {"channel", "area"} <= set(reader.fieldnames):
        raise ConfigError(f"{key}: {path} needs the header channel,area")
    table: dict[int, str] = {}
    for row in reader:
        text, area = (row.get("channel") or "").strip(), (row.get("area") or "").strip()
        if not text.isdigit() or not area:
            raise ConfigError(f"{key}: {path} line {reader.line_num}: expected <channel index>,<area>, "
                              f"got {text!r},{area!r}")
        channel = int(text)
        if channel in table:
            raise ConfigError(f"{key}: {path} lists channel {channel} twice")
        table[channel] = area
    return table


def select_channels(
    channels: str | int | Sequence[int], *, n_channels: int, areas: dict[int, str], area: str | None
) -> list[int]:
    """Resolve ``channels`` (``"all"``, one index or a list) and an optional area filter to indices.

    Raises:
        ConfigError: naming ``subject.channels`` or ``subject.area``.
    """
    if isinstance(channels, str) and channels == "all":
        chosen = list(range(n_channels))
    elif isinstance(channels, int) and not isinstance(channels, bool):
        chosen = [channels]
    elif isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise ConfigError(f"subject.channels: 'all', an index or a list of indices, got {channels!r}")
    else:
        chosen = [integer(c, "subject.channels") for c in channels]
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad or not chosen:
        raise ConfigError(f"subject.channels: {bad or 'none'} not in 0..{n_channels - 1} "
                          f"(subject.n_channels={n_channels})")
    if area is not None:
        if not areas:
            raise ConfigError("subject.area needs subject.channel_areas (a channel,area table)")
        chosen = [c for c in chosen if areas.get(c) == area]
        if not chosen:
            raise ConfigError(f"subject.area: no selected channel is in {area!r} "
                              f"(areas: {sorted(set(areas.values()))})")
    return chosen


def channel_name(channel: int, areas: dict[int, str]) -> str:
    return f"ch{channel}:{areas[channel]}" if channel in areas else f"ch{channel}"
