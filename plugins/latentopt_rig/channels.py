"""Which recorded channels a rig subject returns, and which cortical area each channel is in."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

COMBINE = ("separate", "mean")


def load_area_table(path: str | Path) -> dict[int, str]:
    """Read a channel -> area table.

    Args:
        path: CSV with header ``channel,area`` and one row per array channel; ``channel`` is the
            0-based column of the channel in the response files (``tEvokedResp(:, channel + 1)``
            in MATLAB), ``area`` a name such as V1, V4, PIT.

    Returns:
        channel index -> area name.
    """
    table: dict[int, str] = {}
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"channel", "area"} <= set(reader.fieldnames):
                raise ValueError(f"subject.channel_areas: {path} needs the header channel,area")
            for row in reader:
                channel = int(row["channel"])
                if channel < 0 or channel in table:
                    raise ValueError(f"subject.channel_areas: channel {channel} is negative or listed twice")
                table[channel] = row["area"].strip()
    except FileNotFoundError:
        raise ValueError(f"subject.channel_areas: no file at {path}") from None
    return table


def select_channels(
    channels: str | int | Sequence[int], *, n_channels: int, areas: dict[int, str], area: str | None
) -> list[int]:
    """Resolve ``channels`` (``"all"``, one index or a list) and an optional area filter to indices."""
    if channels == "all":
        chosen = list(range(n_channels))
    elif isinstance(channels, int):
        chosen = [channels]
    elif isinstance(channels, str):
        raise ValueError(f"subject.channels: 'all', an index or a list of indices, got {channels!r}")
    else:
        chosen = [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad or not chosen:
        raise ValueError(f"subject.channels: {bad or 'none'} not in 0..{n_channels - 1} "
                         f"(subject.n_channels={n_channels})")
    if area is not None:
        if not areas:
            raise ValueError("subject.area needs subject.channel_areas (a channel,area table)")
        chosen = [c for c in chosen if areas.get(c) == area]
        if not chosen:
            raise ValueError(f"subject.area: no selected channel is in {area!r} (areas: {sorted(set(areas.values()))})")
    return chosen


def channel_name(channel: int, areas: dict[int, str]) -> str:
    return f"ch{channel}:{areas[channel]}" if channel in areas else f"ch{channel}"
