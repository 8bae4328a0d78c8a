from __future__ import annotations

import numpy as np
import pytest

from kp_platform.data import build_augmenter
from kp_platform.errors import InputError


def test_horizontal_flip_moves_points_and_swaps_channel_pairs():
    augmenter = build_augmenter([{"name": "HorizontalFlip", "p": 1.0}], [0, 2, 1], seed=0)
    image = np.zeros((10, 20, 3), np.uint8)
    image[2, 3] = 255
    points = np.array([[3.0, 2.0], [5.5, 1.0], [15.0, 7.0]])
    out_image, out_points, out_ids = augmenter(image, points, np.array([0, 1, 2]))
    assert out_image[2, 16, 0] == 255  # pixel x=3 → x=16 (width 20, pixel centres)
    np.testing.assert_allclose(out_points, [[16.0, 2.0], [13.5, 1.0], [4.0, 7.0]])
    np.testing.assert_array_equal(out_ids, [0, 2, 1])


def test_no_flip_keeps_channels():
    augmenter = build_augmenter([{"name": "HorizontalFlip", "p": 0.0}], [1, 0], seed=0)
    _, points, ids = augmenter(np.zeros((8, 8, 3), np.uint8), np.array([[1.0, 1.0]]),
                               np.array([0]))
    np.testing.assert_array_equal(ids, [0])
    np.testing.assert_allclose(points, [[1.0, 1.0]])


def test_pipeline_is_built_from_names_and_drops_points_leaving_the_image():
    specs = [{"name": "Affine", "translate_px": {"x": 10, "y": 0}, "p": 1.0}]
    augmenter = build_augmenter(specs, [0], seed=0)
    _, points, ids = augmenter(np.zeros((10, 20, 3), np.uint8),
                               np.array([[2.0, 5.0], [15.0, 5.0]]), np.array([0, 0]))
    np.testing.assert_allclose(points, [[12.0, 5.0]])
    assert len(ids) == 1


def test_empty_list_means_no_augmentation():
    assert build_augmenter([], [0]) is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "HorizontalFlipp"}, "unknown albumentations transform 'HorizontalFlipp' "
                                      "(did you mean 'HorizontalFlip'?)"),
        ({"name": "HorizontalFlip", "prob": 0.5}, "HorizontalFlip takes no argument(s) ['prob']"),
        ({"name": "Rotate", "limit": "x"}, "Rotate: "),
    ],
)
def test_bad_transform_specs(spec, message):
    with pytest.raises(InputError) as err:
        build_augmenter([spec], [0])
    assert message in str(err.value) and "data.augment[0]" in str(err.value)
