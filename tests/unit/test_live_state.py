"""The live view's reader, JSON endpoint, token, read-only routes and the session's status file.

Run folders here are written by :class:`latentopt.records.RunWriter` from hand-made generation records (two
threads, a rig's extras in some blocks), so each test takes milliseconds; the real session is in
``tests/integration/test_live_view.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentopt.checks import ConfigError
from latentopt.live import LiveError, LiveOptions, LiveServer, RunState, live_options
from latentopt.live import cli as live_cli
from latentopt.live import state as live_state
from latentopt.live.status import MAX_MESSAGES, STATUS_FILE, SessionStatus
from latentopt.records import RunWriter

SCORES = {  # generation -> thread -> scores (NaN: an image not shown)
    0: {"deepsim": [1.0, 3.0, 2.0], "biggan": [0.5, 0.5, np.nan]},
    1: {"deepsim": [4.0, 2.0, 3.0], "biggan": [1.5, 0.5, 1.0]},
    2: {"deepsim": [5.0, 6.0, 4.0], "biggan": [np.nan, np.nan, np.nan]},
}


def write_generation(run: Path, generation: int, scores: dict[str, list[float]], *, rig: bool = True) -> None:
    """One generation as the evolution records it (records.block_record's layout), with its best images."""
    names = list(scores)
    owner = np.repeat(np.arange(len(names)), [len(s) for s in scores.values()])
    responses = np.concatenate([np.asarray(s, dtype=np.float64) for s in scores.values()])[:, None]
    record: dict[str, Any] = {
        "meta": {"generation": generation, "experiment": "evolve", "thread_names": names,
                 "timings": {"subject_s": 1.25}, "time": 1763776000.0 + generation},
        "block": {"image_ids": np.asarray([f"g{generation:05d}_{i:03d}" for i in range(len(owner))]),
                  "thread": owner, "responses": responses},
        "threads": {n: {"codes": np.zeros((len(s), 4), np.float32), "scores": np.asarray(s, dtype=np.float64),
                        "reference_scores": np.zeros(0), "state": {"mean": np.full(4, 7.0)}}
                    for n, s in scores.items()},
    }
    if rig:
        shown = int(np.isfinite(responses).any(axis=1).sum())
        record["subject"] = {"shown": shown, "expected": len(owner), "blocks": np.asarray([generation * 2]),
                             "seconds_waited": 11.5, "files": {"block000.mat": b"raw bytes"}}
    best = {n: np.full((8, 8, 3), (40 * generation + k) % 256, np.uint8) for k, (n, s) in enumerate(scores.items())
            if np.isfinite(s).any()}
    RunWriter(run).write_generation(generation, record, best)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    RunWriter(folder).start(config_yaml="experiment:\n  name: evolve\n  generations: 30\n  budget: null\n",
                            provenance={"test": True})
    for generation in (0, 1):
        write_generation(folder, generation, SCORES[generation])
    return folder


@pytest.fixture
def server(run: Path) -> Iterator[LiveServer]:
    with LiveServer(run, port=0).start() as view:
        yield view


def get(view: LiveServer, path: str, *, method: str = "GET", host: str | None = None) -> tuple[int, bytes, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def test_state_reports_block_shown_trajectories_images_and_status(run: Path) -> None:
    status = SessionStatus(run)
    status.update(phase="waiting", generation=2, block=4, label="004", images=6, response_files=["block004.mat"],
                  waiting_since=time.time() - 3)
    status.message("block 004: waiting for block004.mat in /ex (15 s of 600 s)")
    state = RunState(run).snapshot()
    assert state["started"] and not state["finished"] and state["total_blocks"] == 30 and state["recorded"] == 2
    last = state["last"]
    assert (last["generation"], last["shown"], last["expected"]) == (1, 6, 6)
    assert (last["blocks"], last["waited_s"]) == ([2], 11.5)
    assert last["threads"] == {"deepsim": {"best": 4.0, "mean": 3.0}, "biggan": {"best": 1.5, "mean": 1.0}}
    assert last["images"] == {"deepsim": "best_deepsim_00001.png", "biggan": "best_biggan_00001.png"}
    assert state["trajectories"]["deepsim"] == {"generation": [0, 1], "best": [3.0, 4.0], "mean": [2.0, 3.0]}
    assert state["trajectories"]["biggan"]["mean"] == [0.5, 1.0]  # the NaN (not shown) left out of the mean
    assert state["status"]["phase"] == "waiting" and state["status"]["images"] == 6
    assert state["status"]["response_files"] == ["block004.mat"]
    assert [m["text"] for m in state["messages"]] == ["block 004: waiting for block004.mat in /ex (15 s of 600 s)"]


def test_a_thread_without_a_finite_score_has_no_best_and_no_image(run: Path) -> None:
    write_generation(run, 2, SCORES[2], rig=False)
    state = RunState(run).snapshot()
    assert state["last"]["threads"]["biggan"] == {"best": None, "mean": None}
    assert state["last"]["images"] == {"deepsim": "best_deepsim_00002.png"}
    assert (state["last"]["shown"], state["last"]["expected"]) == (3, 6)  # not a rig: finite responses counted
    assert state["trajectories"]["biggan"]["best"] == [0.5, 1.5, None]


def test_refresh_reads_only_new_block_files_and_never_load_run(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_load = np.load
    texts: list[str] = []
    real_read_text = Path.read_text

    def counting_load(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(file).name)
        return real_load(file, *args, **kwargs)

    def counting_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        texts.append(self.name)
        return real_read_text(self, *args, **kwargs)

    def no_load_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the live view must never load the whole run")

    monkeypatch.setattr(np, "load", counting_load)
    monkeypatch.setattr(Path, "read_text", counting_read_text)
    monkeypatch.setattr("latentopt.run_record.load_run", no_load_run)
    monkeypatch.setattr("latentopt.records.load_tree", no_load_run)
    SessionStatus(run).message("first")
    state = RunState(run, min_interval_s=0.0)
    state.refresh()
    assert sorted(opened) == ["gen_00000.npz", "gen_00001.npz"] and state.block_reads == 2
    assert texts.count(STATUS_FILE) == 1
    opened.clear()
    texts.clear()
    for _ in range(5):  # an unchanged folder: no block file, no status file, no config read
        state.refresh(force=True)
        state.snapshot()
    assert opened == [] and texts == [] and state.block_reads == 2
    write_generation(run, 2, SCORES[2])
    state.refresh(force=True)
    assert opened == ["gen_00002.npz"] and state.block_reads == 3
    assert state.snapshot()["last"]["generation"] == 2
    writer = SessionStatus(run)
    texts.clear()
    writer.message("second")
    state.refresh(force=True)
    assert opened == ["gen_00002.npz"] and texts == [STATUS_FILE]


def test_only_the_small_members_of_a_block_file_are_read(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    real_getitem = np.lib.npyio.NpzFile.__getitem__

    def counting(self: Any, key: str) -> Any:
        read.append(key)
        return real_getitem(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", counting)
    live_state.read_block_summary(run / "generations" / "gen_00001.npz")
    assert not [k for k in read if "/state" in k or "codes" in k or k.startswith("subject/files")]
    assert "threads/deepsim/scores" in read


def test_a_damaged_block_file_is_named_and_not_read_again_until_it_changes(run: Path) -> None:
    bad = run / "generations" / "gen_00002.npz"
    bad.write_bytes(b"not an npz")
    state = RunState(run, min_interval_s=0.0)
    snapshot = state.snapshot()
    assert snapshot["recorded"] == 2 and len(snapshot["errors"]) == 1 and "gen_00002.npz" in snapshot["errors"][0]
    state.refresh(force=True)
    assert state.block_reads == 3


def test_state_json_page_and_image_over_http(server: LiveServer, run: Path) -> None:
    code, body, headers = get(server, "/state.json")
    assert code == 200 and headers["Content-Type"] == "application/json"
    state = json.loads(body)
    assert state["last"]["generation"] == 1 and state["trajectories"]["deepsim"]["best"] == [3.0, 4.0]
    code, body, headers = get(server, "/")
    page = body.decode()
    nonce = headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert code == 200 and f'<script nonce="{nonce}">' in page and "default-src 'none'" in headers[
        "Content-Security-Policy"]
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing from the network
    code, body, headers = get(server, "/image/best_deepsim_00001.png")
    assert code == 200 and headers["Content-Type"] == "image/png"
    assert body == (run / "images" / "best_deepsim_00001.png").read_bytes()


def test_token_is_required_when_remote_access_is_allowed(run: Path) -> None:
    with LiveServer(run, port=0, allow_remote=True).start() as view:
        assert view.token and view.url.endswith(f"/?token={view.token}")
        for path in ("/", "/state.json", "/image/best_deepsim_00001.png", "/?token=", "/state.json?token=wrong"):
            code, body, _ = get(view, path)
            assert code == 403 and b"token" in body, path
        for path in ("/", "/state.json", "/image/best_deepsim_00001.png"):
            assert get(view, f"{path}?token={view.token}")[0] == 200, path


def test_a_non_loopback_host_needs_allow_remote(run: Path) -> None:
    with pytest.raises(LiveError, match=r"--host 0\.0\.0\.0 .*--allow-remote"):
        LiveServer(run, host="0.0.0.0", port=0)
    with LiveServer(run, host="0.0.0.0", port=0, allow_remote=True) as view:
        assert view.token is not None and f"?token={view.token}" in view.url


def test_loopback_view_refuses_other_host_names(server: LiveServer) -> None:
    assert get(server, "/state.json", host="evil.example:8765")[0] == 403  # DNS rebinding
    assert get(server, "/state.json", host=f"localhost:{server.port}")[0] == 200
    assert get(server, "/state.json", host=f"127.0.0.1:{server.port}")[0] == 200


@pytest.mark.parametrize("path", [
    "/image/../config.yaml", "/image/..%2fconfig.yaml", "/image/%2e%2e%2fconfig.yaml", "/image/%2e%2e/run.json",
    "/image/..%2f..%2f..%2fetc%2fpasswd", "/image//etc/passwd", "/image/%2fetc%2fpasswd",
    "/image/best_deepsim_00001.png/../../config.yaml", "/image/best_deepsim_00001.png%00.txt",
    "/image/.best_deepsim_00001.png", "/image/montage_deepsim.png", "/image/best_deepsim_00009.png",
    "/config.yaml", "/run.json", "/generations/gen_00000.npz", "/images/best_deepsim_00001.png",
    "/../config.yaml", "/%2e%2e/config.yaml", "/live_status.json",
])
def test_no_path_from_the_url_reaches_the_file_system(server: LiveServer, path: str) -> None:
    code, body, _ = get(server, path)
    assert code == 404 and body == b"not found"


def test_an_image_that_is_a_link_is_refused(server: LiveServer, run: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    write_generation(run, 2, SCORES[2])
    target = run / "images" / "best_deepsim_00002.png"
    target.unlink()
    target.symlink_to(secret)
    server.state.refresh(force=True)
    assert get(server, "/image/best_deepsim_00002.png")[0] == 404
    target.unlink()
    os.link(secret, target)  # a hard link to a file elsewhere
    assert get(server, "/image/best_deepsim_00002.png")[0] == 404


def test_the_view_is_read_only(server: LiveServer, run: Path) -> None:
    def listing() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}

    before = listing()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, _, headers = get(server, "/state.json", method=method)
        assert code == 405 and headers["Allow"] == "GET"
    for path in ("/", "/state.json", "/image/best_deepsim_00001.png"):
        get(server, path)
    assert listing() == before


def test_status_file_is_replaced_atomically_and_bounded(tmp_path: Path) -> None:
    status = SessionStatus(tmp_path)
    status.update(phase="waiting", block=3)
    for k in range(MAX_MESSAGES + 20):
        status.message(f"message {k}")
    data = json.loads((tmp_path / STATUS_FILE).read_text())
    assert data["format"] == "latentopt-live-status" and data["phase"] == "waiting" and data["block"] == 3
    assert len(data["messages"]) == MAX_MESSAGES and data["messages"][-1]["text"] == f"message {MAX_MESSAGES + 19}"
    status.update(block=None)
    assert "block" not in json.loads((tmp_path / STATUS_FILE).read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATUS_FILE]  # no temporary left
    resumed = SessionStatus(tmp_path)  # a resume keeps the earlier messages
    assert resumed.snapshot()["messages"][-1]["text"] == f"message {MAX_MESSAGES + 19}"


def test_a_status_that_cannot_be_written_never_raises(tmp_path: Path) -> None:
    status = SessionStatus(tmp_path / "gone")  # the folder does not exist
    status.message("block 001: waiting")
    status.update(phase="waiting")
    assert status.failed is not None


def test_live_config_key(tmp_path: Path) -> None:
    assert live_options(None) is None and live_options(False) is None
    assert live_options(True) == LiveOptions()
    assert live_options({"enabled": False, "port": 0}) is None
    assert live_options({"enabled": True, "port": 0, "host": "127.0.0.1"}) == LiveOptions(port=0)
    assert live_options({"enabled": True, "host": "0.0.0.0", "allow_remote": True}).host == "0.0.0.0"  # type: ignore
    for value, key in (({"enabled": True, "port": 70000}, "live.port"), ({"port": "x"}, "live.port"),
                       ({"enabled": "yes"}, "live.enabled"), ({"enabled": True, "host": "0.0.0.0"}, "live.host"),
                       ({"prot": 1}, "live.prot"), ("on", "live")):
        with pytest.raises(ConfigError, match=rf"^{key}\b"):
            live_options(value)


def test_cli_user_errors_are_one_line(tmp_path: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def error(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as stopped:
            live_cli.main(argv)
        assert stopped.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in lines[0]
        return lines[0]

    assert error([str(tmp_path / "nope")]) == f"latentopt-live: error: {tmp_path / 'nope'}: no such run folder"
    assert error([str(tmp_path)]).startswith(f"latentopt-live: error: {tmp_path} is not a latentopt run folder")
    assert "--allow-remote" in error([str(run), "--host", "0.0.0.0"])
    assert "0..65535" in error([str(run), "--port", "70000"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert error([str(run), "--port", str(port)]) == (
            f"latentopt-live: error: cannot serve on 127.0.0.1 port {port}: in use by another program; "
            "choose another port, or port 0 for a free one")


def test_a_failing_request_is_one_line_and_the_view_serves_on(server: LiveServer, monkeypatch: pytest.MonkeyPatch,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug in the view")

    monkeypatch.setattr(server.state, "snapshot", broken)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        get(server, "/state.json")
    assert get(server, "/")[0] == 200  # still serving
    lines = [line for line in capfd.readouterr().err.splitlines() if line]
    assert lines == ["latentopt-live: request failed: RuntimeError: a bug in the view"]


def test_a_session_whose_process_ended_is_told_apart(run: Path) -> None:
    import subprocess
    import sys

    SessionStatus(run).update(phase="waiting", block=2)
    assert RunState(run).snapshot()["session_alive"] is True  # this process wrote it
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status = json.loads((run / STATUS_FILE).read_text())
    (run / STATUS_FILE).write_text(json.dumps({**status, "pid": int(ended.stdout)}))
    assert RunState(run).snapshot()["session_alive"] is False  # killed mid-wait: the page says so
    (run / STATUS_FILE).write_text(json.dumps({**status, "host": "another-machine"}))
    assert RunState(run).snapshot()["session_alive"] is None  # a folder shared with another machine: unknown
