"""The manifold from the command line: after an evolution, inheriting its components (with keys changed on
top), resumable with latentopt-resume, re-analysed with latentopt-analyze, and bad input as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentopt import load_manifold
from latentopt.records import GENERATION_DIR, load_run

ENV = {**os.environ, "LATENTOPT_TCMALLOC": "0"}
# a Gabor cell on 32-px Fourier images (d = 90): 2 generations of 40 give 80 codes for 10 PCs
EVOLVE = ["subject=gabor_v1", "subject.size=32", "generator.image_size=32", "generator.max_frequency=2",
          "experiment.generations=2", "experiment.references=[camera]", "progress=false", "device=cpu"]
MANIFOLD = ["experiment=manifold", "experiment.grid=5", "experiment.n_components=10", "experiment.block_size=20",
            "experiment.spheres=[PC1_PC2_PC3,PC1_RND1_RND2]", "experiment.references=[camera]",
            "progress=false", "device=cpu"]


def cli(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"from latentopt.cli import {entry}; {entry}()", *args],
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def evolution(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("evolution") / "run"
    done = cli("main", *EVOLVE, "subject.noise.kind=poisson", "subject.noise.gain=4", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr
    return run


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_manifold_after_an_evolution_inherits_its_components_and_resumes(evolution, tmp_path):
    out = tmp_path / "manifold"
    done = cli("main", *MANIFOLD, f"experiment.source={evolution}", "experiment.repeats=2",
               "subject.noise.gain=8", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    assert "manifold: PC1_PC2_PC3 R²" in done.stdout
    import yaml

    recorded = yaml.safe_load((out / "config.yaml").read_text())["experiment"]
    assert recorded["inherit"] == ["generator", "subject", "objective"]  # `auto`, resolved and recorded
    assert recorded["inherit_overrides"] == {"subject": {"noise": {"gain": 8}}}
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["experiment"]["source"]["inherited"] == ["generator", "objective", "subject"]
    # the inherited subject (the evolution's Gabor cell) with the command's key on top
    assert provenance["subject"]["class"] == "GaborV1Subject" and provenance["subject"]["size"] == 32
    assert provenance["subject"]["noise"]["gain"] == 8.0
    assert provenance["generator"]["name"] == "fourier" and "built-in" in provenance["generator"]["distribution"]
    record = load_manifold(out)
    assert record.responses.shape == (2, 5, 5, 1) and np.isfinite(record.responses).all()
    assert len(record.design.image_ids) == 2 * (5 * 3 + 2) and record.trials.shape[:2] == (34, 2)
    analysis = json.loads((out / "manifold.json").read_text())
    assert [s["name"] for s in analysis["spheres"]] == ["PC1_PC2_PC3", "PC1_RND1_RND2"]
    assert all(s["anova_p"] is not None for s in analysis["spheres"])  # 2 noisy repeats
    # kill after 2 blocks (block files are atomic: a killed run is its first blocks), then resume
    killed = tmp_path / "killed"
    done = cli("main", *MANIFOLD, f"experiment.source={evolution}", "experiment.repeats=2",
               "subject.noise.gain=8", f"hydra.run.dir={killed}")
    assert done.returncode == 0, done.stderr
    blocks = load_run(killed).generations
    for g in range(2, blocks):
        (killed / GENERATION_DIR / f"gen_{g:05d}.npz").unlink()
    resumed = cli("resume_main", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(load_manifold(killed).trials, record.trials)


def test_analyze_refits_a_channel_into_its_own_folder(evolution, tmp_path):
    out = tmp_path / "manifold"
    assert cli("main", *MANIFOLD, f"experiment.source={evolution}", f"hydra.run.dir={out}").returncode == 0
    before = (out / "manifold.json").read_text()
    again = cli("analyze_main", "manifold", str(out))
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "manifold.json").read_text())["spheres"] == json.loads(before)["spheres"]
    channel = cli("analyze_main", "manifold", str(out), "--channel", "0", "--no-baseline")
    assert channel.returncode == 0, channel.stderr
    refit = json.loads((out / "analysis_channel0_nobaseline" / "manifold.json").read_text())
    assert refit["analysed"] == "channel 0" and refit["baseline"] is False
    assert (out / "manifold.json").read_text() == before  # the run's own analysis is left as it was
    assert "channel 3: the run recorded 1 channel(s)" in _one_line(
        cli("analyze_main", "manifold", str(out), "--channel", "3"))
    assert "holds no manifold run" in _one_line(cli("analyze_main", "manifold", str(evolution)))
    # a manifold run is no source of spheres
    line = _one_line(cli("main", *MANIFOLD, f"experiment.source={out}", f"hydra.run.dir={tmp_path / 'again'}"))
    assert "holds no evolution (experiment 'manifold')" in line


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], "experiment.source (a run folder) or experiment.codes (an .npz of codes): give one"),
    (["experiment.source=/nonexistent/run"], "experiment.source: /nonexistent/run is not a latentopt run"),
    (["experiment.thread=other"], "experiment.thread: "),
    (["experiment.spheres=[PC1_PC2]"], "experiment.spheres: 'PC1_PC2' must"),
    (["experiment.spheres=[PC1_PC2_PC40]"], "experiment.spheres: 'PC1_PC2_PC40' must"),
    (["experiment.n_components=100"], "experiment.n_components: "),
    (["experiment.grid=2"], "experiment.grid must be in [3, 181], got 2"),
    (["experiment.repeats=0"], "experiment.repeats must be in [1, 100], got 0"),
    (["experiment.inherit=[optimizer]"], "experiment.inherit must list groups of generator, subject, objective"),
])
def test_bad_manifold_input_is_one_line_and_writes_nothing(evolution, tmp_path, overrides, expected):
    out = tmp_path / "out"
    source = [] if not overrides or overrides[0].startswith("experiment.source") else [f"experiment.source={evolution}"]
    line = _one_line(cli("main", *MANIFOLD, *source, *overrides, f"hydra.run.dir={out}"))
    assert expected in line, line
    assert not out.exists()


def test_a_codes_file_that_is_not_codes_is_one_line(tmp_path):
    bad = tmp_path / "codes.npz"
    np.savez(bad, other=np.zeros(3))
    line = _one_line(cli("main", *MANIFOLD, f"experiment.codes={bad}", f"hydra.run.dir={tmp_path / 'out'}"))
    assert "holds no array named 'codes'" in line
