"""Records: lossless round trips, atomic and never-overwriting writes, clear errors on damage."""

from __future__ import annotations

import numpy as np
import pytest

from latentopt.records import RecordError, RunWriter, atomic_write_text, load_tree, tree_to_npz_bytes


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
