"""First use downloads from the configured address; ``latentopt-deepsim-weights`` fetches, imports and lists."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from latentopt.weights import WeightsError, sha256_file
from latentopt_deepsim import DeePSimGenerator
from latentopt_deepsim.cli import main
from latentopt_deepsim.testing import random_state_dict, write_random_weights, write_state_dict
from latentopt_deepsim.weights import cache_path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A local HTTP server standing in for Hugging Face; files put in the yielded folder are served."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("LATENTOPT_DEEPSIM_URL", f"http://127.0.0.1:{httpd.server_address[1]}/upconvGAN_{{variant}}.pt")
    try:
        yield folder
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_first_use_downloads_into_the_cache_and_records_the_hash(mirror):
    published = write_random_weights(mirror / "upconvGAN_norm1.pt", "norm1")
    generator = DeePSimGenerator(variant="norm1", device="cpu")
    cached = cache_path("norm1")
    assert cached.read_bytes() == published.read_bytes()
    assert generator.provenance()["weights"]["sha256"] == sha256_file(published)
    assert sorted(p.name for p in cached.parent.iterdir() if not p.name.endswith(".lock")) == [cached.name]


def test_cli_fetch_list_import(mirror, tmp_path, capsys):
    write_random_weights(mirror / "upconvGAN_norm1.pt", "norm1")
    assert main(["fetch", "norm1", "--quiet"]) == 0
    assert cache_path("norm1").is_file()
    assert main(["fetch", "norm1"]) == 0
    assert "already cached" in capsys.readouterr().out
    local = write_random_weights(tmp_path / "local.pt", "norm2", seed=3)
    assert main(["import", "norm2", str(local)]) == 0
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert f"sha256 {sha256_file(local)}" in listing
    assert "fc6    missing" in listing


def test_cli_fetch_refuses_a_published_file_with_the_wrong_keys(mirror, capsys):
    state = random_state_dict("norm1")
    state["deconv4.weight"] = state["deconv4.weight"][:, :64]
    write_state_dict(mirror / "upconvGAN_norm1.pt", state)
    assert main(["fetch", "norm1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "'deconv4.weight' has shape" in err and err.count("\n") == 1
    assert not cache_path("norm1").exists()  # never leave a file the generator would refuse


def test_first_use_refuses_a_published_file_with_the_wrong_keys_and_keeps_the_cache_clean(mirror):
    state = random_state_dict("norm1")
    del state["deconv4.bias"]
    write_state_dict(mirror / "upconvGAN_norm1.pt", state)
    with pytest.raises(WeightsError, match=r"missing key 'deconv4\.bias'"):
        DeePSimGenerator(variant="norm1", device="cpu")
    assert not cache_path("norm1").exists()  # the next run downloads again instead of failing the same way
    write_random_weights(mirror / "upconvGAN_norm1.pt", "norm1")
    assert DeePSimGenerator(variant="norm1", device="cpu").weights_path == cache_path("norm1")


def test_cli_import_of_a_bad_file_is_one_line_and_status_1(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    assert main(["import", "fc6", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("latentopt-deepsim-weights: error:") and err.count("\n") == 1
