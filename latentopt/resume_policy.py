"""Which overrides ``latentopt-resume`` accepts, and what it records about them.

A resumed run must go on as the recorded one would have: anything that shapes the images, the
responses or the optimizer's trajectory (seed, components, their settings) is fixed at the start.
Only keys that say how long to run or how to wait for a rig may change; each change is recorded
(old and new value) with the effective configuration in ``resumes.jsonl``, and ``config.yaml`` is
never rewritten. A later resume starts from the latest effective configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentopt.checks import ConfigError
from latentopt.renames import migrate_renamed_keys

RESUMABLE_KEYS = ("experiment.generations", "experiment.budget", "progress", "device")
"""Keys any resume may change: when to stop, the progress bar, and where the networks run."""

RIG_RESUMABLE_KEYS = ("timeout_s", "on_timeout", "poll_s", "settle_s", "corrupt_after_s", "message_every_s",
                      "exchange")
"""``subject.<key>`` a resume may change when the subject is the rig: how long and how often to wait, and
the exchange folder (a session whose folder was lost or taken goes on in a new one, docs/rig.md)."""


def allowed_keys(cfg: DictConfig) -> tuple[str, ...]:
    """The keys a resume of a run with config ``cfg`` may change."""
    subject = cfg.get("subject")
    rig = subject is not None and isinstance(subject, DictConfig) and subject.get("name") == "rig"
    return RESUMABLE_KEYS + (tuple(f"subject.{k}" for k in RIG_RESUMABLE_KEYS) if rig else ())


def base_config(run_dir: Path) -> DictConfig:
    """The run's effective config: the latest resume's ``effective_config``, else ``config.yaml``.

    Keys renamed since the run was recorded are spelled the new way
    (:func:`latentopt.renames.migrate_renamed_keys`).
    """
    return migrate_renamed_keys(_recorded_config(run_dir))


def _recorded_config(run_dir: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
    except Exception as err:  # yaml and omegaconf raise several types for a damaged file
        raise ConfigError(f"{run_dir / 'config.yaml'} is not readable YAML: "
                          f"{(str(err).splitlines() or [type(err).__name__])[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{run_dir / 'config.yaml'} is not a mapping")
    resumes = run_dir / "resumes.jsonl"
    if resumes.exists():
        for line in reversed(resumes.read_text(errors="replace").splitlines()):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line: the one before it is the latest complete resume
            if isinstance(entry, dict) and isinstance(entry.get("effective_config"), str):
                effective = OmegaConf.create(entry["effective_config"])
                if isinstance(effective, DictConfig):
                    return effective
                break
    return cfg


def _parse(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"resume override {item!r} is not key=value")
    key = item.split("=", 1)[0].strip()
    if not key or key[0] in "+~":
        raise ConfigError(f"resume override {item!r}: adding or deleting keys is not allowed on resume")
    try:
        parsed = OmegaConf.from_dotlist([item])
    except Exception as err:  # omegaconf raises several types for a bad dotlist
        raise ConfigError(f"resume override {item!r}: {(str(err).splitlines() or ['unparsable'])[0]}") from None
    return key, OmegaConf.select(parsed, key)


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict[str, dict[str, Any]]]:
    """``cfg`` with the allowed ``overrides`` applied, and the changes ``{key: {old, new}}``.

    An override that leaves a value as it is passes whatever its key.

    Raises:
        ConfigError: one line naming the first key that may not change on resume.
    """
    allowed = allowed_keys(cfg)
    merged = cfg.copy()
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, new = _parse(item)
        missing = object()
        old = OmegaConf.select(cfg, key, default=missing, throw_on_missing=False)
        if old is missing:
            raise ConfigError(f"{key}: not a key of this run's config (resume overrides cannot add keys)")
        if isinstance(old, DictConfig) or isinstance(new, (dict, DictConfig)):
            raise ConfigError(f"{key}={item.split('=', 1)[1]}: a group or component cannot change on resume; "
                              f"start a new run")
        old_plain = OmegaConf.to_container(old) if OmegaConf.is_config(old) else old
        if old_plain == new:
            continue
        if key not in allowed:
            raise ConfigError(f"{key} cannot change on resume ({old_plain!r} -> {new!r}); resume may change only "
                              f"{', '.join(allowed)}")
        OmegaConf.update(merged, key, new, merge=False)
        changes[key] = {"old": old_plain, "new": new}
    return merged, changes
