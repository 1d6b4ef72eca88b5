"""Response files: every format round-trips, damaged files are refused, MATLAB v7.3 looks like MATLAB's."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from latentopt_rig.formats import (
    FORMAT_SUFFIX,
    ResponseFileError,
    TrialResponses,
    encode_responses,
    read_response_bytes,
)
from latentopt_rig.matlab73 import write_mat73

IDS = ["g00001_main_000", "ref_coffee", "g00001_main_000"]
EDGES = np.array([0.0, 10.0, 20.0, 30.0])


@pytest.mark.parametrize("fmt", sorted(FORMAT_SUFFIX))
@pytest.mark.parametrize("binned", [False, True])
def test_round_trip(fmt: str, binned: bool) -> None:
    values = np.arange(18.0).reshape(3, 2, 3) if binned else np.array([[1.5, np.nan], [2.0, 3.0], [4.0, 5.0]])
    data = encode_responses(TrialResponses(IDS, values, EDGES if binned else None), fmt)
    back = read_response_bytes("block001" + FORMAT_SUFFIX[fmt], data)
    assert back.image_ids == IDS
    np.testing.assert_array_equal(back.values, values)
    if binned:
        np.testing.assert_array_equal(back.bin_edges_ms, EDGES)


@pytest.mark.parametrize("fmt", sorted(FORMAT_SUFFIX))
def test_partly_written_files_never_parse(fmt: str) -> None:
    data = encode_responses(TrialResponses(IDS, np.ones((3, 2))), fmt)
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 7):
        with pytest.raises(ResponseFileError):
            read_response_bytes("block001" + FORMAT_SUFFIX[fmt], data[:cut])


def test_mat73_has_matlab_layout() -> None:
    data = write_mat73({"stimulusID": ["block001_000_a", "block001_001_b"],
                        "tEvokedResp": np.arange(6.0).reshape(2, 3)})
    assert data.startswith(b"MATLAB 7.3 MAT-file")
    assert data[124:128] == b"\x00\x02IM"
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(io.BytesIO(data), "r") as f:
        assert f.userblock_size == 512
        assert f["tEvokedResp"].attrs["MATLAB_class"] == b"double"
        assert f["tEvokedResp"].shape == (3, 2)  # MATLAB 2 x 3, stored column-major
        cell = f["stimulusID"]
        assert cell.attrs["MATLAB_class"] == b"cell" and cell.shape == (1, 2)
        first = f[cell[0, 0]]
        assert first.name.startswith("/#refs#/") and first.attrs["MATLAB_class"] == b"char"
        assert first.attrs["MATLAB_int_decode"] == 2
        assert "".join(map(chr, first[()].reshape(-1))) == "block001_000_a"
        assert f["#refs#/a"].attrs["MATLAB_class"] == b"canonical empty"


def test_mat73_row_cell_and_png_names_are_read() -> None:
    """A MATLAB script may save a 1 x n cell of file names with extension."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        targets = []
        for k, name in enumerate(["x_1.png", "y_2.png"]):
            ds = refs.create_dataset(f"b{k}", data=np.array([ord(c) for c in name], dtype=np.uint16).reshape(-1, 1))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            targets.append(ds.ref)
        cell = f.create_dataset("stimulusID", shape=(2, 1), dtype=h5py.ref_dtype)
        cell[0, 0], cell[1, 0] = targets
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        resp = f.create_dataset("tEvokedResp", data=np.array([[1.0, 2.0]]))  # MATLAB 2 x 1
        resp.attrs["MATLAB_class"] = np.bytes_("double")
    back = read_response_bytes("block001.mat", buffer.getvalue())
    assert back.image_ids == ["x_1.png", "y_2.png"]
    np.testing.assert_array_equal(back.values, [[1.0], [2.0]])


def test_npz_with_pickled_objects_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, image_ids=np.array(["a", {"evil": 1}], dtype=object), responses=np.ones((2, 1)))
    with pytest.raises(ResponseFileError, match="npz"):
        read_response_bytes("block001.npz", buffer.getvalue())


@pytest.mark.parametrize(
    ("ids", "values", "message"),
    [(["a", "b"], np.ones((3, 1)), "rows"), (["a"], np.ones((1, 2, 3)), "bin edges")],
)
def test_inconsistent_contents_are_refused(ids: list[str], values: np.ndarray, message: str) -> None:
    with pytest.raises(ResponseFileError, match=message):
        TrialResponses(ids, values).validate()


def test_csv_needs_its_end_line_and_unknown_suffix_refused() -> None:
    data = encode_responses(TrialResponses(["a"], np.ones((1, 1))), "csv")
    assert read_response_bytes("block001.csv", data).values.shape == (1, 1)
    with pytest.raises(ResponseFileError, match="end"):
        read_response_bytes("block001.csv", data.replace(b"# end\n", b""))
    with pytest.raises(ResponseFileError, match="unknown response file type"):
        read_response_bytes("block001.pkl", data)


def test_impossible_values_make_their_trial_not_shown_and_are_listed() -> None:
    """inf, |x| > 1e9 and negative spike counts: that trial becomes NaN (re-queued), the others stay."""
    evoked = TrialResponses(["a", "b", "c", "d"], np.array([[np.inf], [-1e300], [-3.0], [np.nan]])).validate()
    assert evoked.invalid == {0: "infinite value", 1: "magnitude above 1e+09"}
    np.testing.assert_array_equal(evoked.values, [[np.nan], [np.nan], [-3.0], [np.nan]])  # negative evoked is fine
    counts = np.ones((2, 1, 3))
    counts[1, 0, 2] = -1
    binned = TrialResponses(["a", "b"], counts, EDGES).validate()
    assert binned.invalid == {1: "negative spike count"}
    assert np.isnan(binned.values[1]).all() and (binned.values[0] == 1).all()


def test_compressed_files_within_bounds_are_read() -> None:
    """Deflated HDF5 (vlen and fixed-length ids, shuffle, fletcher32, odd chunks), savez_compressed and
    compressed MAT v5 pass the pre-read bounds; HDF5 filters that could be inflated unbounded are refused."""
    from scipy.io import savemat

    ids = [f"block001_{k:03d}_g00001_main_{k:03d}" for k in range(300)]
    for vlen in (True, False):
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            if vlen:
                f.create_dataset("image_ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype(),
                                 compression="gzip")
            else:
                f.create_dataset("image_ids", data=np.array([i.encode() for i in ids]), compression="gzip", chunks=(7,))
            f.create_dataset("responses", data=np.ones((300, 4)), compression="gzip", shuffle=True, fletcher32=True,
                             chunks=(33, 3), maxshape=(None, None))
        back = read_response_bytes("block001.h5", buffer.getvalue())
        assert back.image_ids == ids and back.values.shape == (300, 4)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image_ids=np.array(ids), responses=np.ones((300, 2)))
    assert read_response_bytes("block001.npz", buffer.getvalue()).image_ids == ids
    cell = np.empty((300, 1), dtype=object)
    cell[:, 0] = ids
    buffer = io.BytesIO()
    savemat(buffer, {"stimulusID": cell, "tEvokedResp": np.ones((300, 2)), "other": np.zeros((5, 5))},
            do_compression=True)
    assert read_response_bytes("block001.mat", buffer.getvalue()).image_ids == ids
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("image_ids", data=np.array([b"a"]))
        f.create_dataset("responses", data=np.ones((1, 1)), compression="lzf")
    with pytest.raises(ResponseFileError, match=r"block001\.h5: .*unsupported HDF5 filters \['lzf'\]"):
        read_response_bytes("block001.h5", buffer.getvalue())
