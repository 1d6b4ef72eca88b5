"""Command line: the Hydra app ``latentopt``, ``latentopt-resume`` and ``latentopt-plugins``.

This is the only module that sees a Hydra ``DictConfig``: it turns the composed configuration into
plain keyword arguments for the registered components.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentopt.checks import ConfigError, boolean, integer, non_finite_key
from latentopt.runtime import maybe_reexec_with_tcmalloc, runtime_info

CONFIG_MODULE = "latentopt.conf"
MAX_GENERATIONS = 10**6
MAX_BUDGET = 10**9
MAX_SEED = 2**32 - 1
MAX_POPULATION = 10**5

__all__ = ["ConfigError", "build_evolution", "main", "plugins_main", "resume_main", "run_from_config"]


def _fail(message: str) -> None:
    print(f"latentopt: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def _kwargs(node: Any, key: str, *, drop: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` of a component config node such as ``cfg.generator``."""
    if node is None or "name" not in node:
        raise ConfigError(f"{key}: the config needs a 'name' key naming a registered component")
    data = OmegaConf.to_container(node, resolve=True)
    assert isinstance(data, dict)
    name = str(data.pop("name"))
    for k in drop:
        data.pop(k, None)
    return name, {str(k): v for k, v in data.items()}


THREAD_GROUPS = ("generator", "optimizer", "objective")
_THREAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def thread_specs(cfg: DictConfig) -> list[tuple[str, dict[str, Any]]]:
    """The threads a config declares: ``[(name, {generator, optimizer, objective} config nodes)]``.

    ``experiment.threads`` maps thread names to nodes with any of ``generator``, ``optimizer``,
    ``objective``. A node with a ``name`` key is used as given; one without is merged over the
    top-level group (so ``{optimizer: {sigma0: 0.2}}`` changes one setting); a missing one is the
    top-level group. Without ``experiment.threads``: one thread ``main`` from the top-level groups.
    """
    threads = cfg.experiment.get("threads") if "experiment" in cfg else None
    if not threads:
        return [("main", {group: cfg.get(group) for group in THREAD_GROUPS})]
    if not isinstance(threads, DictConfig):
        raise ConfigError("experiment.threads must map thread names to {generator, optimizer, objective}")
    specs = []
    for key, node in threads.items():
        name = str(key)
        if not _THREAD_NAME.match(name):
            raise ConfigError(f"experiment.threads: thread name {name!r} must be 1-32 letters, digits, '_' or '-'")
        node = node or OmegaConf.create({})
        unknown = set(node.keys()) - set(THREAD_GROUPS)
        if unknown:
            raise ConfigError(f"experiment.threads.{name}: unknown key(s) {sorted(map(str, unknown))}; "
                              f"use {', '.join(THREAD_GROUPS)}")
        spec = {}
        for group in THREAD_GROUPS:
            own, base = node.get(group), cfg.get(group)
            if own is None:
                spec[group] = base
            elif "name" in own or base is None:
                spec[group] = own
            else:
                spec[group] = OmegaConf.merge(base, own)
        specs.append((name, spec))
    return specs


def validate_run_config(cfg: DictConfig) -> None:
    """Check the run-level keys and every component's numbers before anything runs or is written.

    Raises:
        ConfigError: one line naming the key (seed, experiment.*, progress, device, or the first NaN
            or infinite number inside a component's config).
    """
    integer(cfg.get("seed", 0), "seed", minimum=0, maximum=MAX_SEED)
    boolean(cfg.get("progress", True), "progress")
    device = cfg.get("device", "auto")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    from latentopt.runtime import resolve_device

    resolve_device(device)  # here, before a resume takes the run folder's lock
    exp = cfg.get("experiment")
    if not isinstance(exp, DictConfig):
        raise ConfigError("experiment: the config needs an experiment group")
    integer(exp.get("generations"), "experiment.generations", minimum=1, maximum=MAX_GENERATIONS)
    if exp.get("budget") is not None:
        integer(exp.get("budget"), "experiment.budget", minimum=1, maximum=MAX_BUDGET)
    integer(exp.get("reference_every", 1), "experiment.reference_every", minimum=1, maximum=MAX_GENERATIONS)
    if exp.get("references"):
        from latentopt.references import check_reference_names

        check_reference_names(OmegaConf.to_container(exp.references) if OmegaConf.is_config(exp.references)
                              else exp.references)
    for group in ("subject", *THREAD_GROUPS, "experiment"):
        node = cfg.get(group)
        if OmegaConf.is_config(node):
            bad = non_finite_key(OmegaConf.to_container(node, resolve=True), group)
            if bad:
                raise ConfigError(f"{bad} must be a finite number, not NaN or infinity")


def build_evolution(cfg: DictConfig, *, recorder: Any = None, on_generation: Any = None) -> Any:
    """Build the Evolution a config describes (components come from the plugin registry).

    Thread ``k`` (in the order of :func:`thread_specs`) draws its initial codes and optimizer seed
    from ``(seed, k)``; the first thread uses ``seed`` itself, as a single-thread run does.
    """
    import numpy as np

    from latentopt.experiment import Evolution, Thread
    from latentopt.plugins import PluginError, default_registry
    from latentopt.references import load_references
    from latentopt.weights import WeightsError

    validate_run_config(cfg)
    try:
        registry = default_registry()
    except PluginError as err:
        raise ConfigError(str(err)) from err
    seed = int(cfg.get("seed", 0))
    exp = cfg.experiment
    generations = int(exp.generations)  # both checked by validate_run_config
    budget = None if exp.get("budget") is None else int(exp.budget)
    specs = thread_specs(cfg)
    single = len(specs) == 1 and not exp.get("threads")
    built: list[Any] = []
    generators: dict[str, Any] = {}  # threads with identical generator configs share one instance
    threads = []
    try:
        name, kwargs = _kwargs(cfg.get("subject"), "subject")
        subject = registry.build("subjects", name, **kwargs)
        built.append(subject)
        for k, (thread_name, spec) in enumerate(specs):
            where = "" if single else f"experiment.threads.{thread_name}."
            gen_name, gen_kwargs = _kwargs(spec["generator"], f"{where}generator")
            key = repr((gen_name, sorted(gen_kwargs.items())))
            if key not in generators:
                generators[key] = registry.build("generators", gen_name, **gen_kwargs)
                built.append(generators[key])
            generator = generators[key]
            obj_name, obj_kwargs = _kwargs(spec["objective"], f"{where}objective")
            objective = registry.build("objectives", obj_name, **obj_kwargs)
            objective.check_channels(subject.n_channels)
            if spec["optimizer"] is None:
                raise ConfigError(f"{where}optimizer: the config needs an optimizer")
            population = integer(spec["optimizer"].get("population_size", 40), f"{where}optimizer.population_size",
                                 minimum=1, maximum=MAX_POPULATION)
            thread_seed = seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            rng = np.random.default_rng([seed, 1] if k == 0 else [seed, 1, k])
            initial = generator.initial_codes(population, rng=rng)
            opt_name, opt_kwargs = _kwargs(spec["optimizer"], f"{where}optimizer", drop=("population_size",))
            optimizer = registry.build("optimizers", opt_name, initial, seed=thread_seed, **opt_kwargs)
            threads.append(Thread(thread_name, generator, optimizer, objective))
        references = None
        if exp.get("references"):
            sizes = [t.generator.image_size for t in threads]
            references = load_references(list(exp.references), max(sizes))
    # ValueError: components that predate latentopt.checks.ConfigError still raise it for a user's value.
    # WeightsError: one line saying which file to get.
    except (PluginError, ValueError, WeightsError) as err:
        for component in built:
            getattr(component, "close", lambda: None)()
        raise ConfigError(str(err)) from err
    try:
        return Evolution(
            threads, subject, seed=seed, generations=generations, budget=budget,
            references=references, reference_every=int(exp.get("reference_every", 1)),
            recorder=recorder, on_generation=on_generation,
        )
    except ValueError as err:  # e.g. a white-box optimizer with a subject that is not differentiable
        for component in built:
            getattr(component, "close", lambda: None)()
        raise ConfigError(str(err)) from err


def _progress(total: int, enabled: bool, initial: int = 0) -> tuple[Any, Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="gen", disable=not enabled, dynamic_ncols=True)

    def update(result: Any) -> None:
        import numpy as np

        scores = next(iter(result.thread_scores.values()))
        if np.isfinite(scores).any():
            bar.set_postfix(best=f"{np.nanmax(scores):.3g}", mean=f"{np.nanmean(scores):.3g}")
        bar.update(1)

    return bar, update


def _operator_log(result: Any) -> None:
    from latentopt.experiment import operator_line

    print(operator_line(result), file=sys.stderr, flush=True)


def _stopped(err: Exception, run_dir: Path | str) -> None:
    """A subject became unavailable: one line, the resume command, exit status 3."""
    print(f"latentopt: stopped: {' '.join(str(err).split())} The run is resumable: "
          f"latentopt-resume {run_dir}", file=sys.stderr)
    raise SystemExit(3)


def _resume_provenance(cfg: DictConfig, changes: dict[str, Any] | None) -> dict[str, Any]:
    """What a resume records about its config: the changed keys and the effective config (YAML)."""
    return {"changes": dict(changes or {}), "effective_config": OmegaConf.to_yaml(cfg)}


def _best_text(summary: dict[str, Any]) -> str:
    """The first thread's best score for the closing line ("none" when every score was NaN)."""
    best = next(iter(summary["threads"].values()))["best_score"]
    return "none (no finite score)" if best is None else f"{best:.4g}"


def run_from_config(cfg: DictConfig, run_dir: Path | str, *, resume: bool = False,
                    resume_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) the evolution a config describes into ``run_dir``; return the summary.

    The run folder's lock is held throughout: a second run or resume of the same folder is refused.
    ``resume_changes`` (``{key: {old, new}}``, from :func:`latentopt.resume_policy.apply_overrides`) is
    recorded in ``resumes.jsonl`` with the effective config.

    Raises:
        ConfigError: a value of the config is unusable (checked before anything is written).
        RecordError: ``run_dir`` is not a started run (resume), already holds one (new run), is in use,
            or a record could not be written (then the run is resumable).
    """
    from latentopt.records import RecordError, RunWriter, occupied_message, run_folder_contents

    validate_run_config(cfg)  # before the seed is used and before anything is written
    writer = RunWriter(run_dir)
    if resume:
        writer.require_started()
    else:
        found = run_folder_contents(run_dir)
        if found:  # checked again by writer.start, under the lock
            raise RecordError(occupied_message(run_dir, found))
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    with writer.lock():
        return _run_locked(cfg, writer, resume=resume, resume_changes=resume_changes)


def _run_locked(cfg: DictConfig, writer: Any, *, resume: bool, resume_changes: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`run_from_config` with the run folder's lock held."""
    import torch

    from latentopt.records import RecordError, load_generation, load_run
    from latentopt.report import write_report

    run_dir = writer.run_dir
    torch.manual_seed(int(cfg.get("seed", 0)))
    start = load_run(run_dir).generations if resume else 0  # every record readable before anything is added
    evolution = build_evolution(cfg, recorder=writer)
    total = evolution.generations if evolution.budget is None else -(-evolution.budget // 40)
    live = bool(getattr(evolution.subject, "live", False))
    bar, update = _progress(total, bool(cfg.get("progress", True)) and not live, initial=start)
    evolution.on_generation = _operator_log if live else update
    first = evolution.threads[0]
    provenance = {
        "seed": cfg.get("seed", 0),
        "generator": first.generator.provenance(),
        "subject": evolution.subject.provenance(),
        "objective": first.objective.provenance(),
        "optimizer": first.optimizer.provenance(),
        "threads": {t.name: {"generator": t.generator.provenance(), "objective": t.objective.provenance(),
                             "optimizer": t.optimizer.provenance()} for t in evolution.threads},
        "command": sys.argv,
        "runtime": runtime_info(),
    }
    try:
        if resume:
            if start:  # before anything is added: a refused state leaves the folder as it was
                _restore_states(evolution, load_generation(run_dir, start - 1), run_dir, start - 1)
            writer.record_resume(from_generation=start, provenance={
                **provenance, **_resume_provenance(cfg, resume_changes)})
        else:
            writer.start(config_yaml=OmegaConf.to_yaml(cfg), provenance=provenance)
        try:
            evolution.run(start_generation=start)
        except RecordError as err:  # e.g. disk full: the generation in flight is lost, nothing else
            raise RecordError(f"{err}; the run is resumable: latentopt-resume {run_dir}") from err
    finally:
        bar.close()
        for component in {id(t.generator): t.generator for t in evolution.threads}.values():
            component.close()
        evolution.subject.close()
    return write_report(run_dir)


def _restore_states(evolution: Any, last: dict[str, Any], run_dir: Path, generation: int) -> None:
    """Load each thread's optimizer state from the last recorded generation."""
    from latentopt.optimizer import OptimizerError
    from latentopt.records import RecordError

    path = f"{run_dir}/generations/gen_{generation:05d}.npz"
    for thread in evolution.threads:
        try:
            state = last["threads"][thread.name]["state"]
        except (KeyError, TypeError) as err:
            raise RecordError(f"{path} holds no optimizer state of thread {thread.name!r}") from err
        try:
            thread.optimizer.load_state_dict(state)
        except OptimizerError as err:
            raise OptimizerError(f"{path}, thread {thread.name}: {err}") from err


_PREFLIGHT_RUN_DIR: tuple[Path, bool] | None = None
"""``(hydra.run.dir, whether it existed)`` as :func:`_check_run_dir` saw it before Hydra started."""


def _task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from latentopt.optimizer import OptimizerError
    from latentopt.records import RecordError, RunWriter
    from latentopt.subject import SubjectUnavailable

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        try:
            summary = run_from_config(cfg, run_dir)
        except BaseException:
            _remove_unstarted(Path(run_dir), f"{hydra_cfg.job.name}.log")
            raise
    except (ConfigError, RecordError, FileNotFoundError, OptimizerError) as err:
        _fail(str(err))
    except SubjectUnavailable as err:
        if not RunWriter(run_dir).is_started():
            _fail(str(err))
        _stopped(err, run_dir)
    best = next(iter(summary["threads"].values()))["best_score"]
    print(f"run folder: {run_dir}  best score: {_best_text(summary)}")
    return float("nan") if best is None else float(best)


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
    app = hydra.main(version_base="1.3", config_path="conf", config_name="config")(_task)
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
    from latentopt.optimizer import OptimizerError
    from latentopt.records import RecordError
    from latentopt.resume_policy import apply_overrides, base_config
    from latentopt.subject import SubjectUnavailable

    config_path = args.run_dir / "config.yaml"
    if not config_path.exists():
        _fail(f"{args.run_dir} is not a latentopt run folder (no config.yaml)")
    _check_plugins()
    try:
        cfg, changes = apply_overrides(base_config(args.run_dir), list(args.overrides))
        summary = run_from_config(cfg, args.run_dir, resume=True, resume_changes=changes)
    except (ConfigError, RecordError, FileNotFoundError, OptimizerError) as err:
        _fail(str(err))
    except SubjectUnavailable as err:
        _stopped(err, args.run_dir)
    print(f"run folder: {args.run_dir}  generations: {summary['generations']}  best score: {_best_text(summary)}")


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
