"""Hostile response files from a rig: symlinks, non-regular files, decompression bombs in every format,
trial/channel/string bounds, ids with path tricks, empty files, impossible values.

For each: no crash, one line naming the file, nothing already recorded lost, memory bounded (bombs are
refused from their declared sizes, before any data is inflated: checked in time and, in a subprocess,
in peak RSS)."""

from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from latentopt_rig.drill import FAST_WAIT, SimThread
from latentopt_rig.exchange import stimulus_id
from latentopt_rig.formats import ResponseFileError, TrialResponses, encode_responses, read_response_bytes
from latentopt_rig.matlab73 import USERBLOCK_BYTES, mat73_header
from latentopt_rig.subject import RigSubject
from latentopt_rig.waiting import RigTimeout, WaitPolicy, wait_for_response

from latentopt.records import load_run

FAST = WaitPolicy(poll_s=0.01, settle_s=0.02, timeout_s=5.0, corrupt_after_s=0.2, message_every_s=5.0)
GOOD = encode_responses(TrialResponses(["a"], np.array([[1.0]])), "npz")
GIB = 1 << 30


# ------------------------------------------------------------------------------------------- builders
def _npy(shape: tuple[int, ...], descr: str, payload: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def npz_declaring(shape: tuple[int, ...], descr: str = "<f8", ids: int = 1) -> bytes:
    """An .npz whose responses.npy header declares ``shape`` but carries almost no data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("image_ids.npy", _npy((ids,), "<U1", b"a\0\0\0" * ids))
        archive.writestr("responses.npy", _npy(shape, descr, b"\0" * 64))
    return buffer.getvalue()


def npz_inflating(nbytes: int) -> bytes:
    """An .npz with a deflated member of ``nbytes`` (zeros; a few hundred KB on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("image_ids.npy", _npy((1,), "<U1", b"a\0\0\0"))
        with archive.open("responses.npy", "w", force_zip64=True) as member:
            member.write(_npy((nbytes // 8, 1), "<f8", b""))
            block = bytes(8 << 20)
            for _ in range(nbytes // len(block)):
                member.write(block)
    return buffer.getvalue()


def h5_file(build: Callable[[h5py.File], object], *, mat: bool = False) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=USERBLOCK_BYTES if mat else 0) as file:
        build(file)
    data = bytearray(buffer.getvalue())
    if mat:
        data[:128] = mat73_header()
    return bytes(data)


def h5_ids(file: h5py.File, n: int = 1) -> None:
    file.create_dataset("image_ids", data=np.array(["a"] * n, dtype=object), dtype=h5py.string_dtype())


def h5_declared_values(file: h5py.File) -> None:  # 2 GiB of float64, never written: fill value only
    h5_ids(file)
    file.create_dataset("responses", shape=(GIB // 8, 1), dtype="f8", chunks=(1 << 16, 1), compression="gzip")


def h5_long_string_ids(file: h5py.File) -> None:  # fixed-length 50 MB ids
    file.create_dataset("image_ids", shape=(4,), dtype="S50000000")
    file.create_dataset("responses", data=np.ones((4, 1)))


def h5_chunk_bomb(file: h5py.File) -> None:
    """A chunk of 8 KiB whose deflate stream inflates to 300 MiB (HDF5 would grow its buffer to that)."""
    h5_ids(file)
    ds = file.create_dataset("responses", shape=(1024, 1), dtype="f8", chunks=(1024, 1), compression="gzip")
    inflater = zlib.compressobj(9)
    raw = b"".join(inflater.compress(bytes(8 << 20)) for _ in range(300 // 8)) + inflater.flush()
    ds.id.write_direct_chunk((0, 0), raw)


def h5_too_many_trials(file: h5py.File) -> None:
    h5_ids(file, 100_001)
    file.create_dataset("responses", data=np.ones((100_001, 1)))


def mat73_declared(file: h5py.File) -> None:  # MATLAB v7.3: tEvokedResp of 2 GiB declared
    ids = file.create_dataset("stimulusID", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())
    ids.attrs["MATLAB_class"] = np.bytes_("char")
    resp = file.create_dataset("tEvokedResp", shape=(1, GIB // 8), dtype="f8", chunks=(1, 1 << 16),
                               compression="gzip")
    resp.attrs["MATLAB_class"] = np.bytes_("double")


def _mat5_element(mdtype: int, payload: bytes) -> bytes:
    return struct.pack("<II", mdtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def mat5_variable(name: str, dims: tuple[int, ...], data: bytes, *, compress: bool = True) -> bytes:
    """A MAT v5 double array ``name`` declaring ``dims`` with ``data`` as its real part."""
    flags = _mat5_element(6, struct.pack("<II", 6, 0))  # miUINT32: mxDOUBLE_CLASS
    body = flags + _mat5_element(5, struct.pack(f"<{len(dims)}i", *dims)) + _mat5_element(1, name.encode())
    matrix = _mat5_element(14, body + _mat5_element(9, data))
    return _mat5_element(15, zlib.compress(matrix)) if compress else matrix


def mat5_file(*variables: bytes) -> bytes:
    return b"MATLAB 5.0 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x01IM" + b"".join(variables)


def mat5_bomb(nbytes: int) -> bytes:
    """A compressed variable that really inflates to ``nbytes`` (zeros)."""
    dims = (nbytes // 8, 1)
    head = struct.pack("<II", 14, 0xFFFFFFF0) + _mat5_element(6, struct.pack("<II", 6, 0))
    head += _mat5_element(5, struct.pack("<2i", *dims)) + _mat5_element(1, b"tEvokedResp")
    head += struct.pack("<II", 9, nbytes)
    packer = zlib.compressobj(9)
    stream = packer.compress(head) + b"".join(packer.compress(bytes(8 << 20)) for _ in range(nbytes >> 23))
    stream += packer.flush()
    return mat5_file(_mat5_element(15, stream))


def csv_text(rows: list[str]) -> bytes:
    return ("image_id,channel,count\n" + "\n".join(rows) + "\n# end\n").encode()


BOMBS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "npz header 2 GiB": ("block001.npz", lambda: npz_declaring((GIB // 8, 1)), "limit"),
    "npz member inflating 300 MiB": ("block001.npz", lambda: npz_inflating(300 << 20), "limit"),
    "npz 100,001 trials": ("block001.npz", lambda: npz_declaring((100_001, 1), ids=100_001), "trials"),
    "npz pickled object dtype": ("block001.npz", lambda: npz_declaring((1, 1), descr="|O"), "pickle"),
    "h5 2 GiB declared": ("block001.h5", lambda: h5_file(h5_declared_values), "limit"),
    "h5 50 MB string ids": ("block001.h5", lambda: h5_file(h5_long_string_ids), "limit"),
    "h5 chunk inflating 300 MiB": ("block001.h5", lambda: h5_file(h5_chunk_bomb), "inflates"),
    "h5 100,001 trials": ("block001.h5", lambda: h5_file(h5_too_many_trials), "limit"),
    "mat v7.3 2 GiB declared": ("block001.mat", lambda: h5_file(mat73_declared, mat=True), "limit"),
    "mat v5 2 GiB declared": ("block001.mat", lambda: mat5_file(
        mat5_variable("stimulusID", (1, 1), b""), mat5_variable("tEvokedResp", (GIB // 8, 1), b"")), "limit"),
    "mat v5 inflating 300 MiB": ("block001.mat", lambda: mat5_bomb(300 << 20), "inflates"),
    "mat v5 100,001 trials": ("block001.mat", lambda: mat5_file(
        mat5_variable("stimulusID", (100_001, 1), b""), mat5_variable("tEvokedResp", (1, 1), bytes(8))), "limit"),
    "csv channel 1e11": ("block001.csv", lambda: csv_text(["a,100000000000,1"]), "channel"),
    "csv 100,001 trials": ("block001.csv", lambda: csv_text([f"i{k},0,1" for k in range(100_001)]), "trials"),
    "csv 1,000,001 rows": ("block001.csv", lambda: csv_text(["a,0,1"] * 1_000_001), "rows"),
    "csv 10,001 bins": ("block001.csv", lambda: ("image_id,channel," + ",".join(
        f"{k}:{k + 1}" for k in range(10_001)) + "\n# end\n").encode(), "bins"),
    "csv not UTF-8": ("block001.csv", lambda: b"image_id,channel,count\n\xff\xfe,0,1\n# end\n", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_bombs_and_bounds_are_refused_before_reading(case: str) -> None:
    name, build, message = BOMBS[case]
    data = build()
    assert len(data) < 8 << 20  # small on disk: within any max_file_mb
    # this thread's CPU time, not the wall clock or the process's: other processes, and idle torch threads
    # spinning in this one, must not fail the test
    start = time.thread_time()
    with pytest.raises(ResponseFileError, match=message) as info:
        read_response_bytes(name, data)
    assert time.thread_time() - start < 1.5  # refused from declared sizes, not after inflating gigabytes
    text = str(info.value)
    assert text.startswith(f"{name}: ") and "\n" not in text and len(text) < 400


def test_bombs_keep_peak_memory_bounded(tmp_path: Path) -> None:
    """All the bombs parsed in one fresh process: peak RSS stays far below what they declare."""
    script = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_security_rig_files as t
from latentopt_rig.formats import ResponseFileError, read_response_bytes
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for case, (name, build, _) in t.BOMBS.items():
    data = build()
    try:
        read_response_bytes(name, data)
        print("PARSED", case)
    except ResponseFileError:
        pass
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ}).stdout
    assert "PARSED" not in out
    growth = float(out.split("GROWTH_MB")[1])
    assert growth < 200, f"peak RSS grew by {growth:.0f} MB"  # the bombs declare 2 GiB and more
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# ------------------------------------------------------------------------------------------- files that are not files
def _wait(path: Path, policy: WaitPolicy = FAST) -> tuple[object, list[str]]:
    messages: list[str] = []
    return wait_for_response([path], policy, say=messages.append, what="block 001"), messages


@pytest.mark.parametrize("kind", ["symlink to a file outside", "symlink to a directory", "directory", "fifo",
                                  "hard link"])
def test_non_regular_response_files_are_refused_unread(kind: str, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.npz"
    secret.parent.mkdir()
    secret.write_bytes(GOOD)
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    path = exchange / "block001.npz"
    if kind == "symlink to a file outside":
        path.symlink_to(secret)
    elif kind == "symlink to a directory":
        path.symlink_to(secret.parent)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.link(secret, path)
    arrival, messages = _wait(path)
    assert arrival.refused and arrival.data == b"" and arrival.trials is None  # type: ignore[attr-defined]
    assert "refused" in arrival.error  # type: ignore[attr-defined]
    assert len(messages) == 1 and "block001.npz" in messages[0] and "\n" not in messages[0]


def test_empty_response_file_is_named_in_messages_and_timeout(tmp_path: Path) -> None:
    path = tmp_path / "block001.mat"
    path.write_bytes(b"")
    messages: list[str] = []
    policy = WaitPolicy(poll_s=0.01, settle_s=0.01, timeout_s=0.3, corrupt_after_s=0.1, message_every_s=5.0)
    with pytest.raises(RigTimeout, match=r"block001\.mat \(empty \(0 bytes\)\)"):
        wait_for_response([path], policy, say=messages.append, what="block 001")
    assert messages == ["block 001: block001.mat is empty (0 bytes); waiting for its content"]


# ------------------------------------------------------------------------------------------- in a session
def _respond(subject: RigSubject, ids: list[str]) -> np.ndarray:
    return subject.respond(torch.zeros(len(ids), 3, 8, 8), image_ids=ids, rng=np.random.default_rng(0))


def test_ids_with_path_tricks_are_unknown_and_never_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exchange = tmp_path / "exchange"
    subject = RigSubject(exchange=exchange, protocol="native", **FAST_WAIT)
    tricks = ["../../x", "/etc/passwd", "a\0b", "ref_a/../../../evil", "C:\\evil", "\x1b[2Jref_a", "é" * 200]
    ids = [stimulus_id(subject.session, "ref_a"), *tricks]
    values = np.arange(1.0, len(ids) + 1).reshape(-1, 1)
    (exchange / "block000.npz").write_bytes(encode_responses(TrialResponses(ids, values), "npz"))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    responses = _respond(subject, ["ref_a"])
    assert responses.tolist() == [[1.0]]
    assert [str(u) for u in subject.block_extras()["unknown_ids"]] == [t.rstrip("\0") for t in tricks]
    created = {p.name for p in tmp_path.rglob("*")} - set(before)
    assert created - {"latentopt-session.json"} == {  # nothing named after an id
        "block000.manifest.json", f"block000_000_{stimulus_id(subject.session, 'ref_a')}.png"}
    lines = [line for line in capsys.readouterr().err.splitlines() if "not in the manifest" in line]
    assert len(lines) == 1 and "\x1b" not in lines[0]


def test_overlong_and_non_utf8_ids(tmp_path: Path) -> None:
    with pytest.raises(ResponseFileError, match=r"characters in an image id.*257 \(limit 256\)"):
        read_response_bytes("block001.npz", encode_responses(TrialResponses(["x" * 257], np.ones((1, 1))), "npz"))
    data = h5_file(lambda f: (f.create_dataset("image_ids", data=np.array([b"\xff\xfeab"], dtype="S4")),
                              f.create_dataset("responses", data=np.ones((1, 1)))))
    assert read_response_bytes("block001.h5", data).image_ids == ["\ufffd\ufffdab"]  # unknown, never a path


@pytest.mark.parametrize("fmt", ["npz", "h5", "mat73", "mat5", "csv"])
def test_impossible_values_are_not_shown_and_named(fmt: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """-1e300, inf and negative spike counts: those trials are NaN (re-queued) with one line naming them."""
    exchange = tmp_path / "exchange"
    subject = RigSubject(exchange=exchange, protocol="native", requeue_attempts=0, **FAST_WAIT)
    ids = [stimulus_id(subject.session, i) for i in ("ref_a", "ref_b", "ref_c", "ref_a")]
    counts = np.ones((4, 1, 20))
    counts[1, 0, 3], counts[2, 0, 7], counts[3, 0, 0] = -2.0, np.inf, 1e300
    edges = np.arange(0.0, 210.0, 10.0)
    suffix = {"npz": ".npz", "h5": ".h5", "mat73": ".mat", "mat5": ".mat", "csv": ".csv"}[fmt]
    (exchange / f"block000{suffix}").write_bytes(encode_responses(TrialResponses(ids, counts, edges), fmt))
    responses = _respond(subject, ["ref_a", "ref_b", "ref_c"])
    assert np.isfinite(responses[0]).all() and np.isnan(responses[1:]).all()  # ref_a from its valid trial
    extras = subject.block_extras()
    assert sorted(map(str, extras["not_shown"])) == ["ref_b", "ref_c"]
    assert len(extras["attempt_0"]["invalid_trials"]) == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if "impossible values" in line]
    assert len(lines) == 1 and f"block000{suffix}" in lines[0] and "_ref_b' (negative spike count)" in lines[0]


def test_bad_files_do_not_stop_the_session_and_are_recorded_by_name(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """A directory, a symlink to /etc/passwd and a CSV bomb under the block's names: the block is re-queued,
    the good file of the re-queue is used, and the run record keeps the bad files' names and reasons only."""
    exchange = tmp_path / "exchange"
    subject = RigSubject(exchange=exchange, protocol="native", **FAST_WAIT)
    (exchange / "block000.h5").mkdir()
    (exchange / "block000.npz").symlink_to("/etc/passwd")
    (exchange / "block000.csv").write_bytes(csv_text(["ref_a,100000000000,1"]))
    (exchange / "block001.npz").write_bytes(  # the re-queue: the next block of the session's counter
        encode_responses(TrialResponses([stimulus_id(subject.session, "ref_a")], np.array([[7.0]])), "npz"))
    assert _respond(subject, ["ref_a"]).tolist() == [[7.0]]
    extras = subject.block_extras()
    assert set(extras["files"]) == {"block000.csv", "block001.npz"}  # bounded byte copies of regular files
    assert set(extras["unusable_files"]) == {"block000.h5", "block000.npz", "block000.csv"}
    assert "symbolic link" in extras["unusable_files"]["block000.npz"]
    assert all(b"root:" not in data for data in extras["files"].values())
    err = capsys.readouterr().err
    assert "Traceback" not in err and "channel 100000000000 outside" in err


# ------------------------------------------------------------------------------------------- command line
def _cli(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"from latentopt.cli import {entry}; {entry}()", *args],
                          env={**os.environ, "LATENTOPT_TCMALLOC": "0"}, capture_output=True, text=True, timeout=240)


CLI_OVERRIDES = ["subject=rig_native", "subject.poll_s=0.02", "subject.settle_s=0.05", "subject.timeout_s=1.0",
                 "subject.corrupt_after_s=0.2", "generator.image_size=32", "generator.max_frequency=2",
                 "optimizer.population_size=4", "experiment.generations=2", "experiment.references=[]",
                 "progress=false", "device=cpu"]


def _plant_when_block_appears(exchange: Path) -> threading.Thread:
    """Once the session has written block 000's manifest, put a CSV with channel 1e11 and a directory
    under the block's response names (a folder holding files before the session starts is refused)."""

    def plant() -> None:
        deadline = time.monotonic() + 60
        while not (exchange / "block000.manifest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        (exchange / "block000.csv").write_bytes(csv_text(["x_g00000_main_000,100000000000,1"]))
        (exchange / "block000.h5").mkdir()

    thread = threading.Thread(target=plant, daemon=True)
    thread.start()
    return thread


def test_cli_bad_files_stop_resumably_in_one_line_then_resume_completes(tmp_path: Path) -> None:
    """A CSV with channel 1e11 and a directory named block000.h5 used to crash the session, and the resumed
    session again on the same file: now the block is re-queued, the run stops resumably (no rig answering),
    and resumes to the end once the rig answers, the bad files still in the folder."""
    exchange, run_dir = tmp_path / "exchange", tmp_path / "run"
    exchange.mkdir()
    planter = _plant_when_block_appears(exchange)
    stopped = _cli("main", *CLI_OVERRIDES, f"subject.exchange={exchange}", f"hydra.run.dir={run_dir}")
    planter.join(timeout=5)
    assert stopped.returncode == 3 and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1].startswith("latentopt: stopped: no response for block 00")
    assert "block000.csv is unusable (csv channel 100000000000 outside 0..4095); archived" in stopped.stderr
    assert (exchange / "block000.csv").exists() and (exchange / "block000.h5").is_dir()
    sim = SimThread(exchange, protocol="native", fmt="npz")
    try:
        resumed = _cli("resume_main", str(run_dir))
    finally:
        sim.close()
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    run = load_run(run_dir)
    assert run.generations == 2 and np.isfinite(run.threads["main"].responses).all()


def test_cli_foreign_exchange_folder_is_one_line(tmp_path: Path) -> None:
    """RigProtocolError (another session's block in the folder) used to print a traceback."""
    exchange, run_dir = tmp_path / "exchange", tmp_path / "run"
    exchange.mkdir()
    (exchange / "block000.manifest.json").write_text('{"format": "latentopt-rig-manifest", "images": '
                                                     '[{"image_id": "g00000_other_000"}]}')
    stopped = _cli("main", *CLI_OVERRIDES, f"subject.exchange={exchange}", f"hydra.run.dir={run_dir}")
    assert stopped.returncode == 3 and "Traceback" not in stopped.stderr, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("latentopt: stopped: ") and f"exchange folder {exchange}" in last
