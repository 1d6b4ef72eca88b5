"""Where a follow-up experiment's codes and components come from: the evolution it follows.

A manifold or an axis-tuning run reads the codes of one thread of an earlier evolution
(``experiment.source``, ``experiment.thread``) and, by default, rebuilds that run's generator,
subject and objective from its ``config.yaml`` (``experiment.inherit``, ``experiment.inherit_overrides``),
so the follow-up shows its images through the same generator to the same subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentopt.checks import ConfigError
from latentopt.run_record import ThreadRecord

INHERITABLE = ("generator", "subject", "objective")
"""The component groups a follow-up experiment may take from its source run."""


def source_thread(source: Any, thread: str) -> tuple[ThreadRecord, dict[str, Any]]:
    """The recorded thread ``thread`` of the evolution in run folder ``source``, and a description of it.

    Returns:
        ``(thread record, {"run": absolute path, "thread": name, "generations": count})``; the record's
        ``codes`` are ``(generations, population, d)`` and its ``scores`` ``(generations, population)``.

    Raises:
        ConfigError: the folder is no readable run, holds no evolution, has no such thread or no generation
            yet (one line naming ``experiment.source`` or ``experiment.thread``).
    """
    from latentopt.records import RecordError
    from latentopt.run_record import load_run

    try:
        record = load_run(source)
        threads = record.threads
    except RecordError as err:
        raise ConfigError(f"experiment.source: {err}") from err
    if not threads:
        raise ConfigError(f"experiment.source: {source} holds no evolution (experiment {record.experiment!r}); "
                          "give the run folder of an evolution")
    if thread not in threads:
        raise ConfigError(f"experiment.thread: {source} has no thread {thread!r} (it has {', '.join(threads)})")
    codes = threads[thread].codes
    if codes.shape[0] == 0:
        raise ConfigError(f"experiment.source: {source} holds no generation yet")
    return threads[thread], {"run": str(Path(source).absolute()), "thread": thread,
                             "generations": int(codes.shape[0])}


def inherited_components(config: Mapping[str, Any], exp: Mapping[str, Any],
                         source_run: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The generator, subject and objective nodes (the source run's for the groups in ``experiment.inherit``),
    and the groups inherited.

    Args:
        config: the run's plain config.
        exp: its ``experiment`` node (``inherit``: ``auto`` or a list of groups; ``inherit_overrides``: keys
            changed on top of an inherited group).
        source_run: the source run folder, or None (then every group is the config's own).

    Raises:
        ConfigError: ``inherit`` or ``inherit_overrides`` is malformed, or the source's config is unreadable.
    """
    from latentopt.assembly import merge
    from latentopt.records import RecordError
    from latentopt.run_record import recorded_config

    inherit = exp.get("inherit", "auto")
    inherit = list(INHERITABLE) if inherit == "auto" else inherit
    if not isinstance(inherit, (list, tuple)) or not set(map(str, inherit)) <= set(INHERITABLE):
        raise ConfigError(f"experiment.inherit must list groups of {', '.join(INHERITABLE)}, got {inherit!r}")
    nodes = {group: config.get(group) for group in INHERITABLE}
    if source_run is not None and inherit:
        try:
            recorded = recorded_config(source_run, device=str(config.get("device", "auto")))
        except RecordError as err:
            raise ConfigError(f"experiment.source: {err}") from err
        changes = exp.get("inherit_overrides") or {}
        if not isinstance(changes, Mapping) or not set(changes) <= set(inherit):
            raise ConfigError("experiment.inherit_overrides must map inherited groups to the keys that change, "
                              f"got {changes!r}")
        for group in map(str, inherit):
            nodes[group] = merge(recorded.get(group), changes.get(group) or {})
    return nodes, sorted(map(str, inherit)) if source_run is not None else []
