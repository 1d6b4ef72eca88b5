"""The Hydra app from the outside: runs, help, sweeps, errors, and kill -9 then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import ROOT, TINY, cli_command, run_cli

import latentopt
from latentopt.builtins.optimizers import PycmaES
from latentopt.records import load_generation

CONF = ROOT / "conf"  # installed as the package latentopt.conf


def test_tiny_run_writes_complete_records(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*TINY, "experiment.generations=5", "experiment.references=[astronaut,coffee]",
                    f"hydra.run.dir={run_dir}"])
    assert "best score" in proc.stdout
    record = latentopt.load_run(run_dir)
    assert record.scores.shape == (5, 12)
    assert record.codes.shape == (5, 12, 192)
    assert record.responses.shape == (5, 12, 1)
    assert record.reference_ids == ["ref_astronaut", "ref_coffee"]
    assert record.reference_responses.shape == (5, 2, 1)
    for name in ("config.yaml", "provenance.json", "montage_main.png", "trajectory.png", "summary.json"):
        assert (run_dir / name).exists(), name
    provenance = (run_dir / "provenance.json").read_text()
    for lib in ("torch", "cma", "nevergrad", "latentopt", "python"):
        assert f'"{lib}"' in provenance
    state = record.optimizer_state()
    assert state["generation"] == 5


def test_references_every_few_generations_report_without_warnings(tmp_path):
    """Generations without natural references are left out of the plot, not averaged as empty rows."""
    run_dir = tmp_path / "run"
    proc = run_cli([*TINY, "experiment.generations=5", "experiment.references=[astronaut]",
                    "experiment.reference_every=2", f"hydra.run.dir={run_dir}"])
    assert "RuntimeWarning" not in proc.stderr, proc.stderr
    record = latentopt.load_run(run_dir)
    shown = np.isfinite(record.reference_responses[:, 0, 0])
    assert shown.any() and not shown.all()
    assert (run_dir / "trajectory.png").stat().st_size > 0


def test_optimizer_raises_score_of_the_v1_cell(tmp_path):
    run_dir = tmp_path / "run"
    run_cli([*TINY, "experiment.generations=25", f"hydra.run.dir={run_dir}"])
    scores = latentopt.load_run(run_dir).scores
    assert scores[-3:].mean() > 3 * scores[0].mean()


def test_help_lists_choices_of_every_group():
    out = run_cli(["--help"]).stdout
    for group in ("generator", "subject", "objective", "optimizer", "experiment"):
        assert f"{group}:" in out
    for option in ("fourier", "pixel", "insilico_monkey", "gabor_v1", "ga_ponce", "ga_xdream", "cmaes_diag"):
        assert option in out


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("experiment.generationz=3", "experiment.generationz"),
        ("generator=nosuch", "generator/nosuch"),
        ("experiment.generations=abc", "experiment.generations"),
        ("optimizer.n_elite=99", "optimizer.n_elite"),
        ("subject.layer=V9", "subject.layer"),
    ],
)
def test_bad_override_is_a_one_line_error(tmp_path, override, culprit):
    proc = run_cli([*TINY, override, f"hydra.run.dir={tmp_path / 'r'}"], check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert culprit in lines[0], lines[0]
    assert not (tmp_path / "r" / "generations").exists()


def test_every_option_of_every_group_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        for group in ("generator", "subject", "objective", "optimizer", "experiment"):
            options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
            assert options, group
            for option in options:
                cfg = compose(config_name="config", overrides=[f"{group}={option}"])
                assert "name" in cfg[group], f"{group}={option} has no name"


def test_multirun_sweeps(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(["-m", *TINY, "experiment.generations=2", "seed=1,2", f"hydra.sweep.dir={sweep}"])
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "config.yaml").exists())
    assert len(runs) == 2
    first, second = (latentopt.load_run(r).scores for r in runs)
    assert first.shape == second.shape == (2, 12) and not np.array_equal(first, second)


def test_resume_refuses_nothing_and_overwrites_nothing(tmp_path):
    run_dir = tmp_path / "run"
    run_cli([*TINY, "experiment.generations=3", f"hydra.run.dir={run_dir}"])
    proc = run_cli([*TINY, "experiment.generations=3", f"hydra.run.dir={run_dir}"], check=False)
    assert proc.returncode == 2 and "latentopt-resume" in proc.stderr
    before = (run_dir / "generations" / "gen_00000.npz").read_bytes()
    run_cli([str(run_dir), "experiment.generations=5"], entry="resume_main")
    assert latentopt.load_run(run_dir).scores.shape == (5, 12)
    assert (run_dir / "generations" / "gen_00000.npz").read_bytes() == before


@pytest.mark.slow
def test_kill_9_then_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    args = [*TINY, "optimizer=cmaes_diag", "optimizer.population_size=12", "optimizer.sigma0=0.5",
            "experiment.generations=60", "experiment.references=[astronaut]"]
    args = [a for a in args if not a.startswith("optimizer.n_elite")]
    straight = tmp_path / "straight"
    run_cli([*args, f"hydra.run.dir={straight}"])

    killed = tmp_path / "killed"
    for attempt, wait_for in enumerate((5, 25, 40)):
        cmd = cli_command([*args, f"hydra.run.dir={killed}"]) if attempt == 0 else \
            cli_command([str(killed)], entry="resume_main")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        while not (killed / "generations" / f"gen_{wait_for:05d}.npz").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        latentopt.load_run(killed)  # everything written so far is readable
    run_cli([str(killed)], entry="resume_main")

    a, b = latentopt.load_run(straight), latentopt.load_run(killed)
    assert a.scores.shape == b.scores.shape == (60, 12)
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(a.reference_responses, b.reference_responses)
    # The final optimizer states are the same: restored, they propose the same next generation.
    states = [load_generation(r, 59)["threads"]["main"]["state"] for r in (straight, killed)]
    restored = []
    for state in states:
        opt = PycmaES(a.codes[0], seed=123, sigma0=0.5, diagonal=True)
        opt.load_state_dict(state)
        restored.append(opt)
    assert restored[0].sigma == restored[1].sigma
    assert np.array_equal(restored[0].ask(), restored[1].ask())
    assert (killed / "resumes.jsonl").read_text().count("\n") == 3


def test_default_evolution_raises_the_in_silico_monkey_unit(tmp_path):
    """The default config (EfficientNet-Lite0 PIT unit, Fourier images, diagonal CMA-ES), shortened."""
    run_dir = tmp_path / "run"
    run_cli(["experiment.generations=8", "optimizer.population_size=20", "progress=false", "device=cpu",
             f"hydra.run.dir={run_dir}"])
    record = latentopt.load_run(run_dir)
    assert record.scores.shape == (8, 20)
    assert record.scores[-2:].mean() > record.scores[0].mean() + 0.5 * record.scores[0].std()
    assert record.reference_responses.shape == (8, 4, 1)


def _plugin_on_path(tmp_path, source: str) -> dict[str, str]:
    """An installed-looking distribution ``rogue`` (module + dist-info with a latentopt entry point) on PYTHONPATH."""
    (tmp_path / "rogue_plugin.py").write_text(source)
    info = tmp_path / "rogue-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rogue\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[latentopt]\nrogue = rogue_plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH", "")) if p)
    return env


def test_plugin_name_collision_is_one_line_for_runs_help_and_plugin_list(tmp_path):
    env = _plugin_on_path(tmp_path, (
        "from latentopt.plugins import hookimpl\n\n"
        "@hookimpl\ndef latentopt_register_generators(register):\n    register('pixel', object)\n"))
    run_dir = tmp_path / "run"
    for args, entry in (([*TINY, f"hydra.run.dir={run_dir}"], "main"), (["--help"], "main"),
                        ([], "plugins_main")):
        proc = subprocess.run(cli_command(args, entry=entry), capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("latentopt: error:"), (args, proc.stderr)
        assert "pixel" in lines[0] and "rogue 0.1" in lines[0] and "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_optimizer_error_is_one_line(tmp_path):
    env = _plugin_on_path(tmp_path, (
        "from latentopt.optimizer import Optimizer, OptimizerError\n"
        "from latentopt.plugins import hookimpl\n\n"
        "class Broken(Optimizer):\n"
        "    def __init__(self, initial_codes, *, seed=0, **kwargs):\n"
        "        super().__init__(initial_codes, seed=seed)\n"
        "    def _ask(self):\n        raise OptimizerError('broken: the library underneath gave up')\n"
        "    def _tell(self, codes, scores):\n        pass\n"
        "    def _state_dict(self):\n        return {}\n"
        "    def _load_state_dict(self, state):\n        pass\n\n"
        "@hookimpl\ndef latentopt_register_optimizers(register):\n    register('broken', Broken)\n"))
    proc = subprocess.run(cli_command([*TINY, "optimizer.name=broken", f"hydra.run.dir={tmp_path / 'run'}"]),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == "latentopt: error: broken: the library underneath gave up"


def test_scores_that_overflow_stop_with_one_line(tmp_path):
    # gain 1e300 overflows the float32 responses to inf: the optimizer refuses them (OptimizerError)
    proc = run_cli([*TINY, "subject.gain=1e300", "experiment.generations=2", f"hydra.run.dir={tmp_path / 'r'}"],
                   check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == ["latentopt: error: GeneticAlgorithm.tell: infinite score"], proc.stderr
