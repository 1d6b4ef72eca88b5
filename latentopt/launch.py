"""Run or resume any experiment into a run folder: what every experiment gets for free.

The lock, the start marker, ``provenance.json``, the design, resume (with its record in
``resumes.jsonl``), progress display and the end-of-run report are the same for every registered
experiment. Configs arrive as plain dicts (the CLI resolves Hydra's ``DictConfig``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from latentopt.assembly import build_experiment, validate_run_keys
from latentopt.experiment import Experiment, GenerationResult, operator_line
from latentopt.live import LiveOptions, live_options, start_with_run
from latentopt.live.status import session_status
from latentopt.plugins import Registry
from latentopt.records import RecordError, RunWriter, occupied_message, run_folder_contents
from latentopt.run_record import load_run
from latentopt.runtime import runtime_info


def run_experiment(
    config: Mapping[str, Any],
    run_dir: Path | str,
    *,
    config_yaml: str,
    resume: bool = False,
    resume_record: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment a plain config describes into ``run_dir``; return the summary.

    The run folder's lock is held throughout: a second run or resume of the same folder is refused.

    Args:
        config: the plain config (``experiment.name`` picks the experiment).
        run_dir: the run folder.
        config_yaml: the config as YAML, written to ``config.yaml`` by a new run.
        resume: continue the run recorded in ``run_dir``.
        resume_record: what a resume records in ``resumes.jsonl`` besides provenance (changed keys,
            effective config).
        registry: the plugin registry to build from (default: everything installed).

    Raises:
        ConfigError: a value of the config is unusable (checked before anything is written).
        RecordError: ``run_dir`` is not a started run (resume), already holds one (new run), is in use,
            or a record could not be written (then the run is resumable).
    """
    validate_run_keys(config)  # before the seed is used and before anything is written
    live = live_options(config.get("live"))
    writer = RunWriter(run_dir)
    if resume:
        writer.require_started()
    else:
        found = run_folder_contents(run_dir)
        if found:  # checked again by writer.start, under the lock
            raise RecordError(occupied_message(run_dir, found))
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    import torch

    torch.manual_seed(int(config.get("seed", 0)))
    experiment = build_experiment(config, registry=registry)  # every value checked before the lock is taken
    try:
        with writer.lock():
            summary = _run_locked(experiment, config, writer, config_yaml=config_yaml, resume=resume,
                                  resume_record=resume_record, live=live)
            _write_page(writer.run_dir, registry)  # after the experiment's report, still holding the lock
            return summary
    finally:
        experiment.close()


def _run_locked(experiment: Experiment, config: Mapping[str, Any], writer: RunWriter, *, config_yaml: str,
                resume: bool, resume_record: Mapping[str, Any] | None, live: LiveOptions | None = None
                ) -> dict[str, Any]:
    run_dir = writer.run_dir
    start = 0
    if resume:  # every block readable before anything is added
        recorded = load_run(run_dir)
        _ = recorded.subject
        start = recorded.generations
    experiment.recorder = writer
    bar = _attach_progress(experiment, bool(config.get("progress", True)), start, run_dir)
    view = None
    provenance = {"seed": config.get("seed", 0), **experiment.provenance(), "command": sys.argv,
                  "runtime": runtime_info()}
    names = getattr(getattr(experiment, "subject", None), "channel_names", None)
    if names is not None:  # the response channels by name (read back by latentopt.stimuli)
        provenance.setdefault("channel_names", [str(n) for n in names])
    try:
        if resume:
            # before anything is added: a refused state leaves the folder as it was
            _check_design(experiment, writer)
            experiment.restore(run_dir, start)
            writer.record_resume(from_generation=start, provenance={**provenance, **dict(resume_record or {})})
        else:
            writer.start(config_yaml=config_yaml, provenance=provenance, design=experiment.design())
        if live is not None:  # a daemon thread; a failure to start is one line and the run goes on
            view = start_with_run(run_dir, live)
        try:
            experiment.run(start_block=start)
        except RecordError as err:  # e.g. disk full: the block in flight is lost, nothing else
            raise RecordError(f"{err}; the run is resumable: latentopt-resume {run_dir}") from err
    finally:
        if view is not None:
            view.close()
        if bar is not None:
            bar.close()
        experiment.close()  # before the report: a rig's files are released, generators freed
    return experiment.report(run_dir)


def _write_page(run_dir: Path, registry: Registry | None) -> None:
    """``report.html`` (:mod:`latentopt.html_report`); a failure is one line: the run's records are complete."""
    try:
        from latentopt.html_report import write_html_report

        write_html_report(run_dir, registry=registry)
    except Exception as err:  # the page is a view of the records; it must never cost the run
        print(f"latentopt: warning: report.html was not written ({type(err).__name__}: {' '.join(str(err).split())});"
              f" the run is recorded; write the page with: latentopt-report {run_dir}", file=sys.stderr)


def _check_design(experiment: Experiment, writer: RunWriter) -> None:
    """A resumed fixed-design experiment must show the design it recorded (same codes, same order)."""
    if not experiment.matches_design(writer.read_design()):
        raise RecordError(
            f"{writer.run_dir}/design.npz differs from the design this config builds now (were the source run, "
            "the seed or the grid changed?); the run cannot be continued with this config"
        )


def _attach_progress(experiment: Experiment, enabled: bool, start: int, run_dir: Path) -> Any:
    """A progress bar (simulated subjects) or one operator line per block (rigs, also in the live status file);
    returns the bar or None."""
    if getattr(experiment.subject, "live", False):
        status = session_status(run_dir)

        def operator_log(result: GenerationResult) -> None:
            line = operator_line(result)
            print(line, file=sys.stderr, flush=True)
            status.message(line, kind="block")

        experiment.on_block = operator_log
        return None
    from tqdm import tqdm

    total = experiment.total_blocks()
    bar = tqdm(total=total, initial=start, unit="block", disable=not enabled, dynamic_ncols=True)

    def update(result: GenerationResult) -> None:
        scores = next(iter(result.thread_scores.values()), np.zeros(0))
        if np.isfinite(scores).any():
            bar.set_postfix(best=f"{np.nanmax(scores):.3g}", mean=f"{np.nanmean(scores):.3g}")
        bar.update(1)

    experiment.on_block = update
    return bar

