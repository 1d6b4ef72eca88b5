"""The exchange folder: safe names, atomic blocks, resumed blocks adopted, foreign blocks refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentopt_rig.exchange import (
    RigProtocolError,
    block_label,
    check_image_id,
    read_manifest,
    write_block,
)

FRAMES = [np.full((8, 8, 3), v, dtype=np.uint8) for v in (0, 128)]


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".hidden", "a\\b", "", "x" * 200, "a b"])
def test_unsafe_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not usable"):
        check_image_id(bad)


SESSION = "s0123abcd"


def block(folder: Path, ids: list[str], frames: list[np.ndarray] = FRAMES, **kwargs: object) -> tuple[dict, bool]:
    where = {"block": 3, "generation": 2, "attempt": 1, "session": SESSION, **kwargs}
    return write_block(folder, protocol="xdream", image_ids=ids, images=frames, response_hint="block003.mat",
                       **where)  # type: ignore[arg-type]


def test_block_is_written_with_manifest_last_and_adopted_on_resume(tmp_path: Path) -> None:
    ids = ["g00002_main_000", "ref_coffee"]
    manifest, resumed = block(tmp_path, ids)
    assert not resumed and block_label(3) == "003" and block_label(1234) == "1234"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "block003.manifest.json", f"block003_000_{SESSION}_g00002_main_000.png",
        f"block003_001_{SESSION}_ref_coffee.png"]
    read = read_manifest(tmp_path / "block003.manifest.json")
    assert (read["session"], read["block"], read["generation"], read["attempt"]) == (SESSION, 3, 2, 1)
    entries = read["images"]
    assert [e["thread"] for e in entries] == ["main", None] and [e["reference"] for e in entries] == [False, True]
    assert [e["stimulus_id"] for e in entries] == [f"{SESSION}_g00002_main_000", f"{SESSION}_ref_coffee"]
    again, resumed = block(tmp_path, ids)
    assert resumed and again == manifest
    with pytest.raises(RigProtocolError, match="other images"):
        block(tmp_path, ids[::-1])
    with pytest.raises(RigProtocolError, match="session 's0123abcd', this run expects 's99999999'"):
        block(tmp_path, ids, session="s99999999")
    with pytest.raises(RigProtocolError, match="generation 2, this run expects 5"):
        block(tmp_path, ids, generation=5)
    with pytest.raises(RigProtocolError, match="sha256 of g00002_main_000 differs"):
        block(tmp_path, ids, frames=FRAMES[::-1])


def test_tampered_manifest_file_name_is_refused(tmp_path: Path) -> None:
    block(tmp_path, ["g00000_main_000"], FRAMES[:1])
    path = tmp_path / "block003.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["images"][0]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(manifest))
    with pytest.raises(RigProtocolError, match="unexpected image file name"):
        read_manifest(path)


@pytest.mark.parametrize("compression", [0, 1])
def test_png_images_decode_to_the_same_pixels(compression: int) -> None:
    import io

    from PIL import Image

    from latentopt_rig.exchange import png_bytes

    image = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(png_bytes(image, compression=compression)))
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image)
