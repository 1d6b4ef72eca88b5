"""Waiting for the rig: half-written files are not read, corrupt ones are declared, timeouts never hang."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentopt.subject import SubjectUnavailable
from latentopt_rig.formats import TrialResponses, encode_responses
from latentopt_rig.waiting import RigTimeout, WaitPolicy, wait_for_response

FAST = WaitPolicy(poll_s=0.01, settle_s=0.03, timeout_s=5.0, corrupt_after_s=0.3, message_every_s=0.05)
DATA = encode_responses(TrialResponses(["a", "b"], np.array([[1.0], [2.0]])), "mat73")


def write_later(path: Path, pieces: list[bytes], pause: float) -> threading.Thread:
    def run() -> None:
        with open(path, "wb") as handle:
            for piece in pieces:
                time.sleep(pause)
                handle.write(piece)
                handle.flush()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_file_written_slowly_in_pieces_is_read_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "block001.mat"
    third = len(DATA) // 3
    writer = write_later(path, [DATA[:third], DATA[third : 2 * third], DATA[2 * third :]], pause=0.1)
    arrival = wait_for_response([path], FAST, say=lambda m: None, what="block 001")
    writer.join()
    assert arrival.error is None and arrival.data == DATA
    assert arrival.trials is not None and arrival.trials.image_ids == ["a", "b"]


def test_truncated_file_is_declared_unusable_not_waited_on_forever(tmp_path: Path) -> None:
    path = tmp_path / "block001.mat"
    path.write_bytes(DATA[: len(DATA) // 2])
    start = time.monotonic()
    arrival = wait_for_response([path], FAST, say=lambda m: None, what="block 001")
    assert arrival.trials is None and "unreadable" in (arrival.error or "")
    assert arrival.data == DATA[: len(DATA) // 2]
    assert 0.3 <= time.monotonic() - start < 2.0


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "block001.mat"
    path.write_bytes(b"\0" * 5000)
    policy = WaitPolicy(poll_s=0.01, settle_s=0.0, timeout_s=5.0, max_file_bytes=1000)
    arrival = wait_for_response([path], policy, say=lambda m: None, what="block 001")
    assert arrival.trials is None and "exceeds max_file_mb" in (arrival.error or "") and len(arrival.data) == 1000


def test_timeout_stops_with_resumable_error_and_messages(tmp_path: Path) -> None:
    messages: list[str] = []
    policy = WaitPolicy(poll_s=0.01, settle_s=0.0, timeout_s=0.2, message_every_s=0.05)
    with pytest.raises(RigTimeout, match=r"no response for block 007 after .* block007\.mat") as info:
        wait_for_response([tmp_path / "block007.mat"], policy, say=messages.append, what="block 007")
    assert isinstance(info.value, SubjectUnavailable)
    assert messages and all("waiting for block007.mat" in m for m in messages)


def test_wait_policy_waits_past_the_timeout(tmp_path: Path) -> None:
    messages: list[str] = []
    path = tmp_path / "block002.mat"
    policy = WaitPolicy(poll_s=0.01, settle_s=0.02, timeout_s=0.1, on_timeout="wait", message_every_s=0.05)
    writer = write_later(path, [DATA], pause=0.4)
    arrival = wait_for_response([path], policy, say=messages.append, what="block 002")
    writer.join()
    assert arrival.trials is not None and arrival.waited_s >= 0.4
    assert any("waiting on (on_timeout=wait)" in m for m in messages)


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError, match="on_timeout"):
        WaitPolicy(on_timeout="forever")
    with pytest.raises(ValueError, match="poll_s"):
        WaitPolicy(poll_s=0)


def test_symlink_is_refused_unread_and_a_good_file_under_another_name_is_used(tmp_path: Path) -> None:
    outside = tmp_path / "outside.mat"
    outside.write_bytes(DATA)
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    (exchange / "block001.mat").symlink_to(outside)
    (exchange / "block001.npz").mkdir()
    good = exchange / "block001.csv"
    messages: list[str] = []
    policy = WaitPolicy(poll_s=0.01, settle_s=0.02, timeout_s=5.0, corrupt_after_s=2.0, message_every_s=5.0)
    writer = write_later(good, [encode_responses(TrialResponses(["a"], np.array([[3.0]])), "csv")], pause=0.2)
    arrival = wait_for_response([exchange / n for n in ("block001.mat", "block001.npz", "block001.csv")], policy,
                                say=messages.append, what="block 001")
    writer.join()
    assert arrival.path == good and arrival.trials is not None and arrival.trials.values.tolist() == [[3.0]]
    assert {name: reason for name, (reason, _) in arrival.others.items()} == {
        "block001.mat": "refused: a symbolic link; not read",
        "block001.npz": "refused: a directory, not a regular file; not read"}
    assert all(data == b"" for _, data in arrival.others.values())
    assert len(messages) == 2 and all("refused" in m for m in messages)
