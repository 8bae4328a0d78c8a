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


def test_points_on_the_border_of_a_shrunk_image_survive(tmp_path):
    """A keypoint on an edge pixel's centre maps half a pixel outside the image when it is
    shrunk (x = -0.25 at half size); augmenting such a sample must not fail."""
    from kp_platform.data import CocoKeypoints, KeypointDataset, resolve_channels
    from tests.conftest import annotation, image, write_coco

    path = write_coco(tmp_path, [image(1, width=32, height=32)],
                      [annotation(1, 1, 1, [0.0, 0.0, 2, 16.0, 8.0, 2, 0, 0, 0])])
    coco = CocoKeypoints.load(path)
    channels = resolve_channels(None, coco.categories, "t")  # towel.corner0, towel.corner1, ...
    augmenter = build_augmenter([{"name": "HorizontalFlip", "p": 1.0}], range(6), seed=0)
    sample = KeypointDataset(coco, channels, input_size=(16, 16), augmenter=augmenter)[0]
    # (0, 0) → (-0.25, -0.25) → onto the edge (0, 0) → flipped: (15, 0); (16, 8) → (7.75, 3.75)
    # → flipped: (15 - 7.75, 3.75)
    np.testing.assert_allclose(sample["target_xy"][0].numpy(), [[15.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(sample["target_xy"][1].numpy(), [[7.25, 3.75]], atol=1e-6)


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
