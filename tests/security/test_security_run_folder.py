"""Hostile run folders: interrupted starts, gaps, garbage files, reused folders, concurrent writers, a full disk.

Each gives one line naming the culprit, and nothing already recorded is changed.
"""

from __future__ import annotations

import errno
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cli

import latentopt
from latentopt.records import RecordError, RunWriter, load_run, tree_to_npz_bytes


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("made") / "run"
    run_cli([*TINY, "experiment.generations=4", f"hydra.run.dir={run_dir}"])
    return run_dir


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A fresh copy of a finished 4-generation run."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file's (its holder's pid changes with each writer)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    return lines[0]


def _gen(run: Path, g: int) -> Path:
    return run / "generations" / f"gen_{g:05d}.npz"


# ---------------------------------------------------------------------------- load_run on garbage
def _no_marker(run: Path) -> str:
    (run / "run.json").unlink()
    return "run.json"


def _interrupted_start(run: Path) -> str:  # killed after config.yaml: no provenance, no marker
    (run / "run.json").unlink()
    (run / "provenance.json").unlink()
    return "run.json"


def _gap(run: Path) -> str:
    _gen(run, 1).unlink()
    return "gen_00001.npz is missing"


def _first_missing(run: Path) -> str:
    _gen(run, 0).unlink()
    return "gen_00000.npz is missing"


def _no_provenance(run: Path) -> str:
    (run / "provenance.json").unlink()
    return "provenance.json"


def _garbage_provenance(run: Path) -> str:
    (run / "provenance.json").write_text("{not json")
    return "provenance.json is damaged"


def _list_provenance(run: Path) -> str:
    (run / "provenance.json").write_text("[1, 2]")
    return "provenance.json is damaged"


def _garbage_marker(run: Path) -> str:
    (run / "run.json").write_bytes(b"\xff\xfe")
    return "run.json"


def _truncated_npz(run: Path) -> str:
    data = _gen(run, 2).read_bytes()
    _gen(run, 2).write_bytes(data[: len(data) // 2])
    return "gen_00002.npz is damaged"


def _npz_wrong_keys(run: Path) -> str:
    _gen(run, 2).write_bytes(tree_to_npz_bytes({"meta": {"thread_names": ["main"]}, "something": np.ones(3)}))
    return "gen_00002.npz is damaged or not a latentopt generation: missing entry"


def _npz_without_meta(run: Path) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, scores=np.ones(3))
    _gen(run, 1).write_bytes(buffer.getvalue())
    return "gen_00001.npz is not a latentopt record"


def _npz_bad_meta(run: Path) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(b'{"a": {"kind": 1}}', dtype=np.uint8))
    _gen(run, 3).write_bytes(buffer.getvalue())
    return "gen_00003.npz is damaged"


def _npz_meta_not_json(run: Path) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(b"\x80garbage", dtype=np.uint8))
    _gen(run, 3).write_bytes(buffer.getvalue())
    return "gen_00003.npz is damaged"


def _npz_pickle(run: Path) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(b"{}", dtype=np.uint8), block=np.array([{"x": 1}], dtype=object))
    _gen(run, 0).write_bytes(buffer.getvalue())
    return "gen_00000.npz is damaged"


def _npz_other_shape(run: Path) -> str:
    good = latentopt.records.load_generation(run, 3)
    good["threads"]["main"]["codes"] = np.zeros((5, 7), dtype=np.float32)
    _gen(run, 3).write_bytes(tree_to_npz_bytes(good))
    return "generations do not fit together"


def _npz_other_threads(run: Path) -> str:
    good = latentopt.records.load_generation(run, 2)
    good["meta"]["thread_names"] = ["main", "intruder"]
    _gen(run, 2).write_bytes(tree_to_npz_bytes(good))
    return "gen_00002.npz is damaged"


DAMAGE = [_interrupted_start, _gap, _first_missing, _no_provenance, _garbage_provenance, _list_provenance,
          _garbage_marker,
          _truncated_npz, _npz_wrong_keys, _npz_without_meta, _npz_bad_meta, _npz_meta_not_json, _npz_pickle,
          _npz_other_shape, _npz_other_threads]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_load_run_on_a_damaged_folder_is_one_record_error_naming_the_file(run, damage):
    expected = damage(run)
    with pytest.raises(RecordError) as info:
        _ = load_run(run).threads  # load_run opens lazily: reading the blocks finds the damage
    message = str(info.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize("damage", [_no_marker, _gap, _first_missing, _truncated_npz],
                         ids=lambda f: f.__name__.strip("_"))
def test_resume_of_a_damaged_folder_is_one_line_and_writes_nothing(run, damage):
    expected = damage(run)
    before = _snapshot(run)
    line = _one_line(run_cli([str(run), "experiment.generations=6"], entry="resume_main", check=False))
    assert expected in line, line
    assert _snapshot(run) == before


def test_resume_without_marker_says_what_to_do(run):
    _interrupted_start(run)
    line = _one_line(run_cli([str(run)], entry="resume_main", check=False))
    assert "not a latentopt run" in line and "another folder" in line


def test_a_run_recorded_before_start_markers_is_read_but_not_resumed(run):
    """Folders of a latentopt that wrote no run.json (config, provenance, generations): still readable."""
    complete = load_run(run)
    _no_marker(run)
    legacy = load_run(run)
    assert legacy.generations == complete.generations
    np.testing.assert_array_equal(legacy.scores, complete.scores)
    before = _snapshot(run)
    line = _one_line(run_cli([str(run), "experiment.generations=6"], entry="resume_main", check=False))
    assert "wrote no start marker" in line and "cannot be resumed" in line, line
    assert _snapshot(run) == before


# ---------------------------------------------------------------------------- reusing a folder
@pytest.mark.parametrize("keep", ["everything", "generations 1-3 only", "config and marker only"])
def test_an_existing_run_as_hydra_run_dir_is_refused_before_hydra_writes(run, keep):
    if keep == "generations 1-3 only":
        _gen(run, 0).unlink()
    elif keep == "config and marker only":
        shutil.rmtree(run / "generations")
        shutil.rmtree(run / "images")
    before = _snapshot(run)
    proc = run_cli([*TINY, "seed=7", "experiment.generations=2", f"hydra.run.dir={run}"], check=False)
    line = _one_line(proc)
    assert str(run) in line and ("latentopt-resume" in line or "another hydra.run.dir" in line), line
    assert _snapshot(run) == before  # .hydra/ of the run included


def test_an_interrupted_start_is_not_written_into(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    line = _one_line(run_cli([*TINY, f"hydra.run.dir={run}"], check=False))
    assert "config.yaml" in line and "another hydra.run.dir" in line
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_a_file_as_hydra_run_dir_is_one_line(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = _one_line(run_cli([*TINY, f"hydra.run.dir={target}"], check=False))
    assert "is a file" in line and str(target) in line
    assert target.read_text() == "mine"


def test_a_run_failing_before_its_start_leaves_no_folder(tmp_path):
    run = tmp_path / "run"
    line = _one_line(run_cli([*TINY, "optimizer.n_elite=99", f"hydra.run.dir={run}"], check=False))
    assert "optimizer.n_elite" in line
    assert not run.exists()


def test_a_run_failing_before_its_start_leaves_a_folder_that_existed_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    _one_line(run_cli([*TINY, "optimizer.n_elite=99", f"hydra.run.dir={run}"], check=False))
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / "run.json").exists() and not (run / "config.yaml").exists()


# ---------------------------------------------------------------------------- concurrent writers
def test_a_failed_start_does_not_clean_a_folder_another_run_holds(tmp_path, monkeypatch):
    """Two runs started at once in a new folder: the one refused as "in use" removes nothing of the other's."""
    from latentopt import cli

    run = tmp_path / "run"
    monkeypatch.setattr(cli, "_PREFLIGHT_RUN_DIR", (run.absolute(), False))
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "latentopt.log").write_text("")
    with RunWriter(run).lock():
        cli._remove_unstarted(run, "latentopt.log")
        assert sorted(p.name for p in run.iterdir()) == [".hydra", "latentopt.log", "run.lock"]
    cli._remove_unstarted(run, "latentopt.log")  # nobody holds it: this invocation's leftovers go
    assert not run.exists()


def test_a_second_resume_of_a_run_in_use_is_refused(run):
    import os

    before = _snapshot(run)
    with RunWriter(run).lock():
        line = _one_line(run_cli([str(run), "experiment.generations=6"], entry="resume_main", check=False))
    assert f"in use by process {os.getpid()} since" in line, line
    assert _snapshot(run) == before
    run_cli([str(run), "experiment.generations=6"], entry="resume_main")  # free again
    assert load_run(run).generations == 6


# ---------------------------------------------------------------------------- a full disk
def test_disk_full_mid_run_is_one_line_leaves_no_temporary_and_resumes(tmp_path, monkeypatch):
    import os

    from hydra import compose, initialize_config_module

    from latentopt.cli import run_from_config

    with initialize_config_module(config_module="latentopt.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, "experiment.generations=4"])
    run = tmp_path / "run"
    real_write = os.write

    def full_at_generation_2(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").find("gen_00002.npz") >= 0:
            real_write(fd, bytes(data)[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_at_generation_2)
    with pytest.raises(RecordError) as info:
        run_from_config(cfg, run)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message and "gen_00002.npz" in message and "No space left" in message
    assert f"latentopt-resume {run}" in message
    assert sorted(p.name for p in (run / "generations").iterdir()) == ["gen_00000.npz", "gen_00001.npz"]
    assert not list(run.rglob("*.tmp"))
    run_from_config(cfg, run, resume=True)
    assert load_run(run).generations == 4
