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


def test_block_is_written_with_manifest_last_and_adopted_on_resume(tmp_path: Path) -> None:
    ids = ["g00003_main_000", "ref_coffee"]
    manifest, resumed = write_block(tmp_path, block=3, attempt=0, protocol="xdream", image_ids=ids, images=FRAMES,
                                    response_hint="block003.mat")
    assert not resumed and block_label(3, 1) == "003r1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "block003.manifest.json", "block003_000_g00003_main_000.png", "block003_001_ref_coffee.png"]
    entries = read_manifest(tmp_path / "block003.manifest.json")["images"]
    assert [e["thread"] for e in entries] == ["main", None] and [e["reference"] for e in entries] == [False, True]
    again, resumed = write_block(tmp_path, block=3, attempt=0, protocol="xdream", image_ids=ids, images=FRAMES,
                                 response_hint="block003.mat")
    assert resumed and again == manifest
    with pytest.raises(RigProtocolError, match="another session"):
        write_block(tmp_path, block=3, attempt=0, protocol="xdream", image_ids=ids[::-1], images=FRAMES,
                    response_hint="block003.mat")


def test_tampered_manifest_file_name_is_refused(tmp_path: Path) -> None:
    write_block(tmp_path, block=0, attempt=0, protocol="native", image_ids=["g00000_main_000"], images=FRAMES[:1],
                response_hint="block000.h5")
    path = tmp_path / "block000.manifest.json"
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
