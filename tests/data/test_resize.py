from __future__ import annotations

import numpy as np
import pytest

from kp_platform.data import resize_image


def _dot_image(height, width, x, y):
    image = np.zeros((height, width, 3), np.uint8)
    image[y, x] = 255
    return image


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_inverse_transform_is_exact(mode):
    image = np.zeros((30, 50, 3), np.uint8)
    resized, affine = resize_image(image, (64, 48), mode)
    assert resized.shape == (64, 48, 3)
    points = np.random.default_rng(0).uniform(0, 30, (100, 2))
    np.testing.assert_allclose(affine.invert(affine.apply(points)), points, atol=1e-12)


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("size", [(96, 64), (16, 24), (40, 40)])
def test_keypoint_follows_the_pixels(mode, size):
    # A bright pixel's intensity-weighted centre after resizing lands where the transform says.
    x, y = 13, 7
    image = _dot_image(20, 32, x, y)
    resized, affine = resize_image(image, size, mode)
    weights = resized[..., 0].astype(np.float64)
    rows, cols = np.mgrid[: size[0], : size[1]]
    centre = np.array([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum()
    np.testing.assert_allclose(affine.apply(np.array([[x, y]], float))[0], centre, atol=0.3)


def test_letterbox_keeps_aspect_and_centres():
    image = np.full((20, 40, 3), 255, np.uint8)
    resized, affine = resize_image(image, (40, 40), "letterbox")
    assert affine.sx == affine.sy == 1.0
    assert resized[:10].max() == 0 and resized[30:].max() == 0 and resized[10:30].min() == 255
    np.testing.assert_allclose(affine.apply(np.array([[0.0, 0.0]])), [[0.0, 10.0]])
