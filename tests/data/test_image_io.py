"""EXIF orientation: images are read as displayed, so sizes and labels match labelling tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from kp_platform.data import CocoKeypoints, read_rgb
from kp_platform.data.image_io import ORIENTATION_TAG, apply_orientation
from tests.conftest import annotation

STORED_W, STORED_H = 32, 24


def _stored_pixels() -> np.ndarray:
    """Flat blocks (JPEG keeps them) with one bright 8x8 block in the stored top-left corner."""
    pixels = np.full((STORED_H, STORED_W, 3), 40, np.uint8)
    pixels[:8, :8] = (250, 250, 250)
    pixels[16:, 24:] = (0, 0, 200)
    return pixels


def _write_jpeg(path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(_stored_pixels()).save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_rgb_matches_pil_exif_transpose(tmp_path, orientation):
    path = tmp_path / "photo.jpg"
    _write_jpeg(path, orientation)
    with Image.open(path) as handle:
        expected = np.asarray(ImageOps.exif_transpose(handle).convert("RGB")).astype(int)
    pixels = read_rgb(path)
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(int) - expected).max() <= 2  # two JPEG decoders


def test_apply_orientation_is_exact_on_arrays():
    stored = np.arange(2 * 3).reshape(2, 3)
    for orientation in range(1, 9):
        expected = np.asarray(ImageOps.exif_transpose(_exif_image(stored, orientation)))
        np.testing.assert_array_equal(apply_orientation(stored, orientation), expected)


def _exif_image(stored: np.ndarray, orientation: int) -> Image.Image:
    image = Image.fromarray(stored.astype(np.uint8))
    image.getexif()[ORIENTATION_TAG] = orientation
    return image


def _phone_dataset(tmp_path, orientation: int, width: int, height: int, xy: list[float]):
    _write_jpeg(tmp_path / "photo.jpg", orientation)
    data = {
        "images": [{"id": 1, "file_name": "photo.jpg", "width": width, "height": height}],
        "annotations": [annotation(1, 1, 1, [*xy, 2])],
        "categories": [{"id": 1, "name": "spot", "keypoints": ["spot"]}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def test_orientation_6_passes_the_size_check_as_displayed(tmp_path, run_kp):
    # Displayed turned 90 degrees clockwise: 24 wide, 32 high, as the labelling tool showed it.
    path = _phone_dataset(tmp_path, 6, STORED_H, STORED_W, [20.0, 3.5])
    code, _, err = run_kp("data", "check", path)
    assert code == 0, err
    # The stored top-left block is now at the top right, where the label is.
    pixels = read_rgb(CocoKeypoints.load(path).images[0].path)
    assert pixels.shape == (STORED_W, STORED_H, 3) and pixels[3, 20].min() > 200
    # The stored size is the wrong one now.
    wrong = _phone_dataset(tmp_path, 6, STORED_W, STORED_H, [20.0, 3.5])
    code, _, err = run_kp("data", "check", wrong)
    assert code == 2 and "is 24x32, the JSON says 32x24" in err


def test_orientation_3_labels_are_not_upside_down(tmp_path):
    from kp_platform.data import KeypointDataset, parse_channels, resolve_channels

    # Displayed upside down: the bright block is at the bottom right, and so is the label.
    path = _phone_dataset(tmp_path, 3, STORED_W, STORED_H, [28.0, 20.0])
    coco = CocoKeypoints.load(path)
    channels = resolve_channels(parse_channels(None), coco.categories, "t")
    sample = KeypointDataset(coco, channels, input_size=(STORED_H, STORED_W))[0]
    x, y = sample["target_xy"][0][0].round().int().tolist()
    assert sample["image"][:, y, x].min() > 0.8 * 255
