"""The offline natural image set (crops and mirrors of scikit-image's photographs) and a lab's image folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentopt.checks import ConfigError
from latentopt.natural import folder_set, natural_set


def test_the_natural_set_holds_500_distinct_images_from_every_photograph():
    ids, images = natural_set(500, (32, 32))
    assert len(ids) == len(set(ids)) == 500 and images.shape == (500, 3, 32, 32)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert len({i.split("_s")[0] for i in ids}) == 21  # every photograph contributes
    flat = images.reshape(500, -1).numpy()
    assert len(np.unique(flat.round(4), axis=0)) >= 490  # crops of one scene are still different images
    again_ids, again = natural_set(500, (32, 32))
    assert again_ids == ids and np.array_equal(again.numpy(), images.numpy())  # the seeded choice is fixed
    assert natural_set(1260, (16, 16))[1].shape[0] == 1260


def test_a_mirror_image_is_the_flipped_crop():
    ids, images = natural_set(1260, (16, 16))
    index = {name: k for k, name in enumerate(ids)}
    plain, mirrored = index["nat_astronaut_s050_r1c1"], index["nat_astronaut_s050_r1c1_m"]
    np.testing.assert_allclose(images[mirrored].numpy(), images[plain].numpy()[:, :, ::-1], atol=1e-5)


@pytest.mark.parametrize("n", [0, 1261, 2.5, True])
def test_a_size_outside_the_set_is_one_error(n):
    with pytest.raises(ConfigError, match="the natural set holds 1 to 1260 images"):
        natural_set(n, (16, 16))


def test_a_folder_of_images_loads_sorted_and_bad_files_are_named(tmp_path):
    for k, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"img{k}.png")
    ids, images = folder_set(tmp_path, (16, 16))
    assert ids == ["img0", "img1"] and images.shape == (2, 3, 16, 16)
    assert float(images[0, 0].mean()) == pytest.approx(1.0) and float(images[1, 1].mean()) == pytest.approx(1.0)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"natural image .*broken\.png is not a readable image"):
        folder_set(tmp_path, (16, 16))
    with pytest.raises(ConfigError, match="no such folder"):
        folder_set(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no image"):
        folder_set(empty)
