"""Records: lossless round trips, atomic and never-overwriting writes, clear errors on damage."""

from __future__ import annotations

import numpy as np
import pytest

from latentopt.records import (
    RecordError,
    RunWriter,
    atomic_write_bytes,
    atomic_write_text,
    load_run,
    load_tree,
    tree_to_npz_bytes,
)


def test_tree_round_trip_keeps_types(tmp_path):
    tree = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "ids": np.asarray(["g00000_main_000", "ref_astronaut"]),
        "nested": {"n": 3, "x": 0.5, "s": "text", "none": None, "flag": True, "blob": b"\x00\x01", "empty": {}},
        "lst": [1, 2, 3],
    }
    path = tmp_path / "t.npz"
    path.write_bytes(tree_to_npz_bytes(tree))
    back = load_tree(path)
    assert np.array_equal(back["a"], tree["a"]) and back["a"].dtype == np.float32
    assert back["ids"].tolist() == tree["ids"].tolist()
    assert back["nested"] == {"n": 3, "x": 0.5, "s": "text", "none": None, "flag": True, "blob": b"\x00\x01",
                              "empty": {}}
    assert back["lst"] == [1, 2, 3]


def test_object_arrays_are_refused():
    with pytest.raises(RecordError, match="object array"):
        tree_to_npz_bytes({"bad": np.array([{}], dtype=object)})


def test_atomic_write_never_overwrites(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "first")
    with pytest.raises(RecordError, match="never overwritten"):
        atomic_write_text(path, "second")
    assert path.read_text() == "first"
    assert not list(tmp_path.glob(".*.tmp"))


def test_damaged_generation_file_names_the_file(tmp_path):
    path = tmp_path / "gen.npz"
    path.write_bytes(tree_to_npz_bytes({"a": np.zeros(100)})[:50])
    with pytest.raises(RecordError, match=r"gen\.npz is damaged"):
        load_tree(path)


def test_writer_refuses_a_folder_holding_a_run(tmp_path):
    writer = RunWriter(tmp_path)
    writer.start(config_yaml="a: 1\n", provenance={"seed": 0})
    writer.write_generation(0, {"meta": {"generation": 0}})
    with pytest.raises(RecordError, match="latentopt-resume"):
        RunWriter(tmp_path).start(config_yaml="a: 2\n", provenance={})
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
    with pytest.raises(RecordError, match="never overwritten"):
        writer.write_generation(0, {"meta": {"generation": 0}})
    assert writer.completed_generations() == 1


def _fail_after(monkeypatch, nbytes: int) -> list[int]:
    """Make ``os.write`` write ``nbytes`` in all, then fail as a full disk does."""
    import errno
    import os

    real, written = os.write, [0]

    def write(fd, data):
        if written[0] >= nbytes:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data)[: nbytes - written[0]])
        written[0] += n
        return n

    monkeypatch.setattr(os, "write", write)
    return written


def test_write_failing_halfway_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "generations" / "gen_00000.npz"
    written = _fail_after(monkeypatch, 1000)
    with pytest.raises(RecordError) as info:
        atomic_write_bytes(path, b"x" * 5000)
    monkeypatch.undo()
    assert written[0] == 1000  # half the data did reach the disk: under a temporary name
    assert not path.exists()
    assert not list(path.parent.iterdir())
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "No space left" in message


def test_interrupted_overwrite_keeps_the_whole_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old and complete")
    _fail_after(monkeypatch, 3)
    with pytest.raises(RecordError, match=r"summary\.json"):
        atomic_write_text(path, "new text that never fully arrives", overwrite=True)
    monkeypatch.undo()
    assert path.read_text() == "old and complete"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_final_rename_never_replaces_a_file_another_writer_made(tmp_path, monkeypatch):
    """The exists-check and the rename are not one step: a writer that slips in between must win."""
    from latentopt import record_files

    path = tmp_path / "gen_00003.npz"
    real = record_files._write_temporary

    def racing(target, data):
        tmp = real(target, data)
        target.write_bytes(b"the other writer's generation")
        return tmp

    monkeypatch.setattr(record_files, "_write_temporary", racing)
    with pytest.raises(RecordError, match="never overwritten"):
        atomic_write_bytes(path, b"mine")
    assert path.read_bytes() == b"the other writer's generation"
    assert [p.name for p in tmp_path.iterdir()] == ["gen_00003.npz"]


def test_start_writes_the_marker_last_and_undoes_a_failed_start(tmp_path, monkeypatch):
    from latentopt import records

    real = records.atomic_write_text

    def failing(path, text, **kwargs):
        if path.name == records.RUN_MARKER:
            raise RecordError(f"cannot write {path}: No space left on device")
        real(path, text, **kwargs)

    monkeypatch.setattr(records, "atomic_write_text", failing)
    with pytest.raises(RecordError, match=r"run\.json"):
        RunWriter(tmp_path).start(config_yaml="a: 1\n", provenance={})
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())
    writer = RunWriter(tmp_path)
    writer.start(config_yaml="a: 1\n", provenance={})
    assert writer.is_started()


def test_a_folder_without_marker_is_no_run(tmp_path):
    """A kill between config.yaml and the marker: not a run for the reader, and no new run writes into it."""
    (tmp_path / "config.yaml").write_text("a: 1\n")
    (tmp_path / "provenance.json").write_text("{}")
    with pytest.raises(RecordError, match=r"no run\.json"):
        load_run(tmp_path)
    with pytest.raises(RecordError, match=r"no run\.json"):
        RunWriter(tmp_path).require_started()
    with pytest.raises(RecordError, match=r"another hydra\.run\.dir"):
        RunWriter(tmp_path).start(config_yaml="b: 2\n", provenance={})
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"


def test_a_gap_in_generations_names_the_missing_file(tmp_path):
    writer = RunWriter(tmp_path)
    writer.start(config_yaml="a: 1\n", provenance={})
    for g in (0, 1, 2, 4, 5):
        writer.write_generation(g, {"meta": {"generation": g}})
    with pytest.raises(RecordError, match=r"gen_00003\.npz is missing"):
        writer.completed_generations()
    with pytest.raises(RecordError, match=r"gen_00003\.npz is missing"):
        load_run(tmp_path)


def test_lock_admits_one_writer_and_names_the_holder(tmp_path):
    import os

    writer = RunWriter(tmp_path)
    with writer.lock():
        with pytest.raises(RecordError, match=rf"in use by process {os.getpid()} since \d{{4}}-") as info:
            with RunWriter(tmp_path).lock():
                pass
        assert "\n" not in str(info.value)
    with RunWriter(tmp_path).lock():  # released when the holder is done
        pass


def test_load_tree_can_leave_optimizer_states_out(tmp_path):
    path = tmp_path / "gen.npz"
    path.write_bytes(tree_to_npz_bytes({"threads": {"main": {"scores": np.ones(3), "state": {"m": np.ones(9)}}}}))
    assert "state" in load_tree(path)["threads"]["main"]
    light = load_tree(path, skip_state=True)
    assert "state" not in light["threads"]["main"] and light["threads"]["main"]["scores"].tolist() == [1, 1, 1]


def test_load_fields_reads_only_the_named_entries_and_names_a_damaged_file(tmp_path):
    """The views' reader (report, live view): values, arrays, lists and ``*`` within one level."""
    from latentopt.record_files import load_fields, tree_to_npz_bytes

    tree = {"meta": {"generation": 7, "thread_names": ["a", "b"], "weights": [1.0, 2.0]},
            "threads": {"a": {"scores": np.arange(3.0), "state": {"mean": np.ones(5)}},
                        "b": {"scores": np.arange(2.0)}}}
    path = tmp_path / "gen_00007.npz"
    path.write_bytes(tree_to_npz_bytes(tree))
    got = load_fields(path, ["meta/generation", "meta/thread_names", "meta/weights", "threads/*/scores",
                             "nothing/here"])
    assert set(got) == {"meta/generation", "meta/thread_names", "meta/weights", "threads/a/scores",
                        "threads/b/scores"}
    assert got["meta/generation"] == 7 and got["meta/thread_names"] == ["a", "b"]
    assert got["meta/weights"] == [1.0, 2.0]
    np.testing.assert_array_equal(got["threads/a/scores"], np.arange(3.0))
    np.testing.assert_array_equal(got["threads/b/scores"], np.arange(2.0))
    assert "threads/a/state/mean" not in load_fields(path, ["threads/*/scores"])  # one level per *
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(2))
    with pytest.raises(RecordError, match=r"foreign\.npz is not a latentopt record"):
        load_fields(foreign, ["x"])
    broken = tmp_path / "broken.npz"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RecordError, match=r"broken\.npz is damaged or not a latentopt record"):
        load_fields(broken, ["meta/generation"])
