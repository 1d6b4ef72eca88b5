"""Command line: the Hydra app ``latentopt``, ``latentopt-resume`` and ``latentopt-plugins``.

This is the only module that sees a Hydra ``DictConfig``: it turns the composed configuration into
plain keyword arguments for the registered components.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentopt.checks import ConfigError
from latentopt.runtime import maybe_reexec_with_tcmalloc

CONFIG_MODULE = "latentopt.conf"

__all__ = ["ConfigError", "build_evolution", "main", "plugins_main", "resume_main", "run_from_config"]


def _fail(message: str) -> None:
    print(f"latentopt: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as a plain, resolved dict (what the library takes)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}


def thread_specs(cfg: DictConfig) -> list[tuple[str, dict[str, Any]]]:
    """:func:`latentopt.assembly.thread_specs` of a composed config."""
    from latentopt.assembly import thread_specs as specs

    return specs(plain(cfg))


def validate_run_config(cfg: DictConfig) -> None:
    """Check the run-level keys (seed, progress, device, experiment.name, NaN anywhere) of a composed config."""
    from latentopt.assembly import validate_run_keys

    validate_run_keys(plain(cfg))


def build_evolution(cfg: DictConfig, *, recorder: Any = None, on_generation: Any = None) -> Any:
    """The experiment a composed config describes (:func:`latentopt.assembly.build_experiment`)."""
    from latentopt.assembly import build_experiment

    experiment = build_experiment(plain(cfg))
    experiment.recorder = recorder
    experiment.on_block = on_generation
    return experiment


def _stopped(err: Exception, run_dir: Path | str) -> None:
    """A subject became unavailable: one line, the resume command, exit status 3."""
    print(f"latentopt: stopped: {' '.join(str(err).split())} The run is resumable: "
          f"latentopt-resume {run_dir}", file=sys.stderr)
    raise SystemExit(3)


def _best_score(summary: dict[str, Any]) -> float | None:
    """The first thread's best score (None without a finite one, or for an experiment without threads)."""
    threads: dict[str, dict[str, Any]] = summary.get("threads") or {}
    first = next(iter(threads.values()), None)
    return None if first is None else first.get("best_score")


def _closing(summary: dict[str, Any]) -> str:
    """The closing line's result: an experiment's own headline, else the first thread's best score."""
    if summary.get("headline"):
        return str(summary["headline"])
    best = _best_score(summary)
    return "best score: none (no finite score)" if best is None else f"best score: {best:.4g}"


def run_from_config(cfg: DictConfig, run_dir: Path | str, *, resume: bool = False,
                    resume_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) the experiment of a composed config into ``run_dir`` (:func:`latentopt.launch.run_experiment`).

    ``resume_changes`` (``{key: {old, new}}``, from :func:`latentopt.resume_policy.apply_overrides`) is
    recorded in ``resumes.jsonl`` with the effective config.
    """
    from latentopt.launch import run_experiment

    record = {"changes": dict(resume_changes or {}), "effective_config": OmegaConf.to_yaml(cfg)} if resume else None
    return run_experiment(plain(cfg), run_dir, config_yaml=OmegaConf.to_yaml(cfg), resume=resume,
                          resume_record=record)


_PREFLIGHT_RUN_DIR: tuple[Path, bool] | None = None
"""``(hydra.run.dir, whether it existed)`` as :func:`_check_run_dir` saw it before Hydra started."""


def _task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from latentopt.errors import LatentoptError
    from latentopt.records import RunWriter
    from latentopt.subject import SubjectUnavailable

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        try:
            _resolve_inherit(cfg, list(hydra_cfg.overrides.task))
            _resolve_generators(cfg, list(hydra_cfg.overrides.task))
            summary = run_from_config(cfg, run_dir)
        except BaseException:
            _remove_unstarted(Path(run_dir), f"{hydra_cfg.job.name}.log")
            raise
    except SubjectUnavailable as err:
        if not RunWriter(run_dir).is_started():
            _fail(str(err))
        _stopped(err, run_dir)
    except LatentoptError as err:  # every expected error: one line (a bug keeps its traceback)
        _fail(str(err))
    best = _best_score(summary)
    print(f"run folder: {run_dir}  {_closing(summary)}")
    return float("nan") if best is None else float(best)


def _resolve_inherit(cfg: DictConfig, overrides: list[str]) -> None:
    """``experiment.inherit: auto``: the component groups this command line does not replace (``subject=...``)
    are inherited from the source run, with the keys it sets (``subject.noise.level=0.2``) changed on top."""
    from latentopt.experiments.source_run import INHERITABLE

    if "experiment" not in cfg or cfg.experiment.get("inherit") != "auto":
        return
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    inherit = [g for g in INHERITABLE if g not in keys]
    changes: dict[str, Any] = {}
    for key in keys:
        group, _, rest = key.partition(".")
        if group in inherit and rest:
            value = OmegaConf.select(cfg, key)
            node = changes.setdefault(group, {})
            *parents, leaf = rest.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    cfg.experiment.inherit = inherit
    cfg.experiment.inherit_overrides = changes


def _resolve_generators(cfg: DictConfig, overrides: list[str]) -> None:
    """``experiment.generators: [option, ...]`` -> ``{option: the generator group's config}`` (the paired-generator
    experiments); a ``generator.<key>=...`` override of the command line applies to each generator that has the key."""
    from hydra import compose

    generators = cfg.experiment.get("generators") if "experiment" in cfg else None
    if generators is None or not OmegaConf.is_list(generators) or not all(isinstance(g, str) for g in generators):
        return
    shared = [o for o in overrides if not o.lstrip("+~").startswith(("experiment", "generator", "hydra"))]
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides if o.lstrip("+~").startswith("generator.")]
    resolved: dict[str, Any] = {}
    for option in list(generators):
        try:
            node = compose(config_name="config", overrides=[*shared, f"generator={option}"]).generator
        except Exception as err:  # Hydra's errors for an unknown option: one line
            raise ConfigError(f"experiment.generators: {option!r} is not a generator option "
                              f"({(str(err).splitlines() or ['?'])[0]})") from None
        for key in keys:
            if OmegaConf.select(node, key.removeprefix("generator."), default=None) is not None:
                OmegaConf.update(node, key.removeprefix("generator."), OmegaConf.select(cfg, key), merge=False)
        resolved[str(option)] = OmegaConf.to_container(node, resolve=True)
    cfg.experiment.generators = resolved


def _remove_unstarted(run_dir: Path, log_name: str) -> None:
    """A run that failed before its start marker: remove what this invocation created in its folder.

    Only a folder that did not exist before this invocation (as :func:`_check_run_dir` saw it) is
    touched: Hydra's ``.hydra/``, the job log, the lock file, and the folder itself if then empty.
    Nothing is touched while another process holds the folder's lock (a run started there meanwhile).
    """
    import shutil

    from latentopt.records import LOCK_FILE, RecordError, RunWriter

    if _PREFLIGHT_RUN_DIR is None or _PREFLIGHT_RUN_DIR != (run_dir.absolute(), False) or not run_dir.is_dir():
        return
    writer = RunWriter(run_dir)
    try:
        with writer.lock():
            if writer.is_started():
                return
            shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
            for name in (log_name, LOCK_FILE):
                (run_dir / name).unlink(missing_ok=True)
    except RecordError:
        return  # in use by another process: its folder now
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty: something else lives there


def _check_run_dir(argv: list[str]) -> None:
    """Before Hydra writes ``.hydra/`` into ``hydra.run.dir``: refuse a folder that holds a run.

    Hydra's ``${now:...}`` is pinned to this moment, so the folder resolved here is the one Hydra uses.
    Sweeps (``-m``) are left to Hydra: each job gets a fresh subfolder of the sweep folder.
    """
    global _PREFLIGHT_RUN_DIR
    if any(a.startswith("-") for a in argv):
        return
    from datetime import datetime

    from hydra import compose, initialize_config_module

    from latentopt.records import occupied_message, run_folder_contents

    started = datetime.now()
    OmegaConf.register_new_resolver("now", started.strftime, replace=True, use_cache=True)
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(argv), return_hydra_config=True)
            run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir", throw_on_missing=True)))
    except Exception:  # a bad hydra.* override: Hydra itself reports it
        return
    if run_dir.exists() and not run_dir.is_dir():
        _fail(f"hydra.run.dir: {run_dir} is a file, not a folder")
    found = run_folder_contents(run_dir)
    if found:
        _fail(occupied_message(run_dir, found))
    _PREFLIGHT_RUN_DIR = (run_dir.absolute(), run_dir.exists())


def _preflight(argv: list[str]) -> None:
    """Compose the config once before Hydra runs, so a bad override is a one-line error."""
    if any(a.startswith("-") for a in argv):
        return  # --help, --cfg, -m sweeps ...: Hydra handles them
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            compose(config_name="config", overrides=[a for a in argv if not a.startswith("hydra.")])
    except (HydraException, ValueError, KeyError) as err:
        text = str(err)
        cause = err.__cause__
        if cause is not None and str(cause).splitlines() and str(cause).splitlines()[0] not in text:
            text = f"{text} {str(cause).splitlines()[0]}"
        _fail(text)


def _check_plugins() -> None:
    """A plugin name collision (or a plugin that fails to load) is one line, before Hydra's search path plugin."""
    from latentopt.plugins import PluginError, default_registry

    try:
        default_registry()
    except PluginError as err:
        _fail(str(err))


def main() -> None:
    """Console script ``latentopt``: the Hydra app."""
    maybe_reexec_with_tcmalloc()
    import hydra

    _check_plugins()
    _preflight(sys.argv[1:])
    _check_run_dir(sys.argv[1:])
    app = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(_task)
    app()


def resume_main(argv: list[str] | None = None) -> None:
    """Console script ``latentopt-resume RUN_DIR [key=value ...]``."""
    maybe_reexec_with_tcmalloc()
    from latentopt.resume_policy import RESUMABLE_KEYS, RIG_RESUMABLE_KEYS

    parser = argparse.ArgumentParser(
        prog="latentopt-resume",
        description="Continue a killed or finished run in its own folder. Overrides such as "
        "experiment.generations=60 extend it; nothing already recorded is rewritten. Only "
        f"{', '.join(RESUMABLE_KEYS)} (and a rig subject's {', '.join(RIG_RESUMABLE_KEYS)}) may change; "
        "each change is recorded in resumes.jsonl.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value changes, e.g. experiment.generations=60")
    args = parser.parse_args(argv)
    from latentopt.errors import LatentoptError
    from latentopt.resume_policy import apply_overrides, base_config
    from latentopt.subject import SubjectUnavailable

    config_path = args.run_dir / "config.yaml"
    if not config_path.exists():
        _fail(f"{args.run_dir} is not a latentopt run folder (no config.yaml)")
    _check_plugins()
    try:
        cfg, changes = apply_overrides(base_config(args.run_dir), list(args.overrides))
        summary = run_from_config(cfg, args.run_dir, resume=True, resume_changes=changes)
    except SubjectUnavailable as err:
        _stopped(err, args.run_dir)
    except LatentoptError as err:
        _fail(str(err))
    print(f"run folder: {args.run_dir}  blocks: {summary['generations']}  {_closing(summary)}")


def plugins_main(argv: list[str] | None = None) -> None:
    """Console script ``latentopt-plugins``: what is installed, and from which distribution."""
    from latentopt.plugins import GROUPS, PluginError, default_registry

    argparse.ArgumentParser(prog="latentopt-plugins", description=plugins_main.__doc__).parse_args(argv)
    try:
        registry = default_registry()
    except PluginError as err:
        _fail(str(err))
    for group in GROUPS:
        print(f"{group}:")
        for name in registry.names(group):
            component = registry.get(group, name)
            print(f"  {name:<20} {component.distribution:<36} ({component.plugin})")
    print("config search paths:")
    for path, plugin in registry.searchpaths:
        print(f"  {path:<40} ({plugin})")


if __name__ == "__main__":
    main()


def analyze_main(argv: list[str] | None = None) -> None:
    """Console script ``latentopt-analyze manifold|alignment|control|axis_tuning ...``: an experiment's analysis
    again."""
    parser = argparse.ArgumentParser(prog="latentopt-analyze",
                                     description="Re-run an experiment's analysis on its recorded responses.")
    sub = parser.add_subparsers(dest="analysis", required=True)
    manifold = sub.add_parser("manifold", help="Kent fits, ANOVA and noise ceiling of a manifold run's maps")
    manifold.add_argument("run_dir", type=Path)
    manifold.add_argument("--channel", type=int, default=None,
                          help="fit this channel's (evoked) response instead of the run's objective score")
    manifold.add_argument("--no-baseline", action="store_true", help="fit the Kent model without a baseline")
    manifold.add_argument("--out", type=Path, default=None,
                          help="folder for manifold.json and the figures (default: the run folder; with "
                               "--channel or --no-baseline: RUN_DIR/analysis_<options>)")
    alignment = sub.add_parser("alignment", help="success, normalised activation and dynamics of paired-generator "
                               "sessions (run folders, or folders of them such as a multirun)")
    alignment.add_argument("runs", type=Path, nargs="+")
    alignment.add_argument("--out", type=Path, required=True, help="folder for alignment.csv, summary.md, figures")
    alignment.add_argument("--generators", nargs=2, default=None, metavar=("A", "B"),
                           help="the two thread names compared (default: the first session's first two)")
    alignment.add_argument("--alpha", type=float, default=0.01, help="success threshold on p (default 0.01)")
    alignment.add_argument("--per-thread-normalisation", action="store_true",
                           help="divide each thread by its own maximum (the later notebooks) instead of one shared")
    alignment.add_argument("--time-constant", type=float, default=0.8, help="fraction for the time constant (0.632)")
    control = sub.add_parser("control", help="stretch and one-hot success, chance levels and twin prediction of a "
                             "control session")
    control.add_argument("run_dir", type=Path)
    control.add_argument("--out", type=Path, default=None, help="folder for control.json and the figure "
                         "(default: the run folder)")
    axes = sub.add_parser("axis_tuning", help="ANOVA and bell-shaped / monotonic classification of an axis-tuning "
                          "run's curves")
    axes.add_argument("run_dir", type=Path)
    axes.add_argument("--channel", type=int, default=None,
                      help="analyse this channel's response instead of the run's objective score")
    axes.add_argument("--alpha", type=float, default=0.01, help="ANOVA threshold for 'tuned' (default 0.01)")
    axes.add_argument("--aic-margin", type=float, default=2.0,
                      help="AIC lead the Gaussian needs over the line to be 'bell-shaped' (default 2)")
    axes.add_argument("--min-drop", type=float, default=0.2,
                      help="fall of the fitted Gaussian towards both ends, as a fraction of its amplitude, "
                           "for 'bell-shaped' (default 0.2)")
    axes.add_argument("--out", type=Path, default=None,
                      help="folder for axis_tuning.json/.csv/.png (default: the run folder; with --channel: "
                           "RUN_DIR/analysis_channel<N>)")
    args = parser.parse_args(argv)
    from latentopt.errors import LatentoptError

    if args.analysis == "axis_tuning":
        from latentopt.experiments.axis_tuning_report import write_axis_tuning_report

        out = args.out
        if out is None and args.channel is not None:
            out = args.run_dir / f"analysis_channel{args.channel}"
        try:
            summary = write_axis_tuning_report(args.run_dir, channel=args.channel, alpha=args.alpha,
                                               aic_margin=args.aic_margin, min_drop=args.min_drop, out=out)
        except LatentoptError as err:
            _fail(str(err))
        print(f"analysis: {out or args.run_dir}  {summary['headline']}")
        return
    if args.analysis == "control":
        from latentopt.experiments.control_report import write_control_report

        try:
            summary = write_control_report(args.run_dir, out=args.out)
        except LatentoptError as err:
            _fail(str(err))
        print(f"analysis: {args.out or args.run_dir}  {summary['headline']}")
        return
    if args.analysis == "alignment":
        from latentopt.experiments.alignment_report import write_alignment_report

        try:
            result = write_alignment_report(args.runs, args.out, generators=tuple(args.generators or ()) or None,
                                            alpha=args.alpha, shared=not args.per_thread_normalisation,
                                            fraction=args.time_constant)
        except LatentoptError as err:
            _fail(str(err))
        print(f"analysis: {args.out}  {result['sessions']} sessions")
        return
    from latentopt.experiments.manifold_report import write_manifold_report

    out = args.out
    if out is None and (args.channel is not None or args.no_baseline):
        parts = ([f"channel{args.channel}"] if args.channel is not None else []) + (
            ["nobaseline"] if args.no_baseline else [])
        out = args.run_dir / f"analysis_{'_'.join(parts)}"
    try:
        summary = write_manifold_report(args.run_dir, channel=args.channel, baseline=not args.no_baseline, out=out)
    except LatentoptError as err:
        _fail(str(err))
    print(f"analysis: {out or args.run_dir}  {summary['headline']}")
