"""The resumable, atomic download of weight files, against a local HTTP server the test starts."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from latentopt.weights import DownloadError, download, file_record, sha256_file, weights_dir

GOOD = bytes(range(256)) * 40  # 10,240 bytes
CHANGED = bytes(reversed(range(256))) * 40


@dataclass
class ServerState:
    """What the fake server serves and how it misbehaves."""

    data: bytes = GOOD
    etag: str | None = '"v1"'
    cuts: list[int | None] = field(default_factory=list)  # bytes sent by each response before closing
    honour_if_range: bool = True
    after_cut: Callable[[ServerState], None] | None = None
    requests: list[dict[str, str | None]] = field(default_factory=list)
    refusals: list[int] = field(default_factory=list)  # HTTP codes answered before serving


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one response per connection: closing it is the "cut"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        if self.path != "/weights.bin":
            self.send_error(404)
            return
        data, etag = state.data, state.etag
        state.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
        if state.refusals:
            self.send_error(state.refusals.pop(0))
            return
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == etag or not state.honour_if_range):
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        cut = state.cuts.pop(0) if state.cuts else None
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None and state.after_cut is not None:
            state.after_cut(state)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/weights.bin", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name != dest.name and not p.name.endswith(".lock"))


def test_good_file_is_downloaded_whole_and_atomically(server, tmp_path):
    url, _state = server
    dest = tmp_path / "cache" / "w.pt"
    assert download(url, dest, progress=False) == dest
    assert dest.read_bytes() == GOOD
    assert _leftovers(dest) == []
    assert sha256_file(dest) == hashlib.sha256(GOOD).hexdigest()
    assert file_record(dest) == {"path": str(dest.resolve()), "bytes": len(GOOD),
                                 "sha256": hashlib.sha256(GOOD).hexdigest()}


def test_truncated_response_is_resumed_with_a_range_request(server, tmp_path):
    url, state = server
    state.cuts = [3000]
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == GOOD
    assert [r["range"] for r in state.requests] == [None, "bytes=3000-"]
    assert state.requests[1]["if_range"] == '"v1"'


def test_interrupted_download_keeps_its_part_file_and_a_later_call_resumes_it(server, tmp_path):
    url, state = server
    state.cuts = [4000, 0, 0]  # then the connection keeps dying without a byte
    dest = tmp_path / "w.pt"
    with pytest.raises(DownloadError, match="kept for resuming"):
        download(url, dest, progress=False, attempts=2)
    assert not dest.exists()
    assert (tmp_path / "w.pt.part").stat().st_size == 4000
    state.requests.clear()
    download(url, dest, progress=False)  # the server is healthy again
    assert dest.read_bytes() == GOOD
    assert state.requests == [{"range": "bytes=4000-", "if_range": '"v1"'}]


def _switch_to_changed(state: ServerState) -> None:
    state.data, state.etag, state.after_cut = CHANGED, '"v2"', None


def test_file_changing_mid_way_restarts_instead_of_splicing_two_versions(server, tmp_path):
    url, state = server
    state.cuts, state.after_cut = [5000], _switch_to_changed
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == CHANGED  # If-Range did not match: the server sent the new file whole


def test_file_changing_mid_way_is_caught_even_when_the_server_ignores_if_range(server, tmp_path):
    url, state = server
    state.cuts, state.after_cut, state.honour_if_range = [5000], _switch_to_changed, False
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == CHANGED
    assert state.requests[-1]["range"] is None  # the 206 of another ETag was refused; restarted


def test_without_a_validator_a_part_file_is_not_trusted(server, tmp_path):
    url, state = server
    state.etag, state.cuts = None, [2000]
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == GOOD
    assert [r["range"] for r in state.requests] == [None, None]


def test_wrong_size_is_an_error_and_leaves_nothing_behind(server, tmp_path):
    url, _ = server
    dest = tmp_path / "w.pt"
    with pytest.raises(DownloadError, match=f"downloaded {len(GOOD)} bytes, expected {len(GOOD) + 1}"):
        download(url, dest, progress=False, expected_size=len(GOOD) + 1)
    assert not dest.exists() and _leftovers(dest) == []


def test_wrong_hash_is_an_error(server, tmp_path):
    url, _ = server
    dest = tmp_path / "w.pt"
    with pytest.raises(DownloadError, match="SHA-256"):
        download(url, dest, progress=False, expected_sha256="0" * 64)
    assert not dest.exists()
    download(url, dest, progress=False, expected_sha256=hashlib.sha256(GOOD).hexdigest())
    assert dest.read_bytes() == GOOD


def test_file_that_changes_size_but_not_etag_mid_way_is_restarted(server, tmp_path):
    # a careless server: a new, longer file under the same ETag; the resumed range's total
    # disagrees with the first response's, so the part file is thrown away, not glued to it
    url, state = server
    state.cuts = [3000]
    state.after_cut = lambda s: setattr(s, "data", CHANGED + b"tail")
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == CHANGED + b"tail"
    assert [r["range"] for r in state.requests] == [None, "bytes=3000-", None]


def test_busy_server_is_retried_then_the_download_resumes(server, tmp_path):
    url, state = server
    state.cuts, state.refusals = [5000], []
    state.after_cut = lambda s: s.refusals.extend([503, 502])
    dest = tmp_path / "w.pt"
    download(url, dest, progress=False)
    assert dest.read_bytes() == GOOD
    assert [r["range"] for r in state.requests] == [None, "bytes=5000-", "bytes=5000-", "bytes=5000-"]


def test_a_server_that_stays_busy_is_one_clear_error_and_keeps_the_part_file(server, tmp_path):
    url, state = server
    state.cuts = [4000]
    state.after_cut = lambda s: s.refusals.extend([503] * 10)
    dest = tmp_path / "w.pt"
    with pytest.raises(DownloadError, match="HTTP 503"):
        download(url, dest, progress=False, attempts=3)
    assert (tmp_path / "w.pt.part").stat().st_size == 4000 and not dest.exists()


def test_http_error_and_unreachable_server_are_one_clear_error(server, tmp_path):
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(url.replace("weights.bin", "missing.bin"), tmp_path / "a", progress=False)
    with pytest.raises(DownloadError, match="refused"):
        download("http://127.0.0.1:9/weights.bin", tmp_path / "b", progress=False)


def test_weights_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTOPT_WEIGHTS_DIR", str(tmp_path))
    assert weights_dir() == tmp_path
    monkeypatch.delenv("LATENTOPT_WEIGHTS_DIR")
    assert weights_dir() == Path("~/.cache/latentopt/weights").expanduser()
