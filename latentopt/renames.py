"""Config keys renamed so that one concept has one word, and what becomes of their old spellings.

A new config that uses an old key fails with one line naming the new one (:func:`renamed_key_hint`,
called where the registry reports an unexpected keyword). A run recorded before a rename is resumed
with its recorded keys spelled the new way (:func:`migrate_renamed_keys`), since its ``config.yaml``
is never rewritten.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

RENAMED_KEYS: dict[str, dict[str, str]] = {
    "optimizers": {"sigma": "sigma0", "centre": "init_mean", "popsize": "population_size",
                   "population": "population_size"},
    "objectives": {"unit": "channel", "units": "channels"},
}
"""``{registry group: {old key: new key}}`` of component settings."""

RENAMED_VALUES: dict[tuple[str, str], dict[str, str]] = {("optimizers", "centre"): {"mean": "codes", "zero": "zero"}}
"""``{(group, old key): {old value: new value}}`` where the values were renamed too."""

MIGRATED_ON_RESUME = {"optimizers": ("sigma", "centre"), "objectives": ("unit", "units")}
"""The old keys a recorded config held (``popsize`` and ``population`` were never config keys)."""

_UNEXPECTED = re.compile(r"unexpected keyword(?: argument)? '(\w+)'")


def renamed_key_hint(group: str, message: str) -> str | None:
    """``"optimizer.sigma was renamed optimizer.sigma0"`` when ``message`` (a factory's ``TypeError``)
    rejects a renamed key of ``group`` (``"optimizers"``, ...); None for any other error."""
    match = _UNEXPECTED.search(message)
    new = RENAMED_KEYS.get(group, {}).get(match.group(1)) if match else None
    if match is None or new is None:
        return None
    old, singular = match.group(1), group[:-1]
    values = RENAMED_VALUES.get((group, old), {})
    changed = ", ".join(f"{a} is now {b}" for a, b in values.items() if a != b)
    return f"{singular}.{old} was renamed {singular}.{new}" + (f" ({changed})" if changed else "")


def _accepts(factory: Callable[..., Any], key: str) -> bool | None:
    """Whether ``factory`` takes keyword ``key``; None when its signature cannot tell (``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if key in parameters:
        return True
    return None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()) else False


def _component_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig, Any]]:
    """``(group, node, component name)`` of every optimizer and objective node, threads' included."""
    found = []
    threads = OmegaConf.select(cfg, "experiment.threads", default=None)
    owners = [cfg] + [t for t in (threads.values() if isinstance(threads, DictConfig) else []) if t is not None]
    for owner in owners:
        if not isinstance(owner, DictConfig):
            continue
        for key, group in (("optimizer", "optimizers"), ("objective", "objectives")):
            node, top = owner.get(key), cfg.get(key)
            if isinstance(node, DictConfig):
                name = node.get("name", top.get("name") if isinstance(top, DictConfig) else None)
                found.append((group, node, name))
    return found


def migrate_renamed_keys(cfg: DictConfig) -> DictConfig:
    """A copy of a recorded run's config with renamed keys spelled the new way.

    A key is renamed only for a registered component whose factory no longer takes the old key and
    does take the new one, so a third-party component that still uses an old word is left alone.
    """
    from latentopt.plugins import PluginError, default_registry

    try:
        registry = default_registry()
    except PluginError:
        return cfg  # building the run reports it
    cfg = copy.deepcopy(cfg)
    for group, node, name in _component_nodes(cfg):
        try:
            factory = registry.get(group, str(name)).factory
        except PluginError:
            continue
        for old in MIGRATED_ON_RESUME[group]:
            new = RENAMED_KEYS[group][old]
            if old in node and new not in node and _accepts(factory, old) is False and _accepts(factory, new):
                value = node[old]
                node[new] = RENAMED_VALUES.get((group, old), {}).get(value, value) if isinstance(value, str) else value
                del node[old]
    return cfg
