"""A real photo: imgaug's quokka with its seven keypoints, left/right pairs included."""

from __future__ import annotations

import numpy as np

from kp_platform.data import CocoKeypoints, KeypointDataset, build_augmenter, resolve_channels
from kp_platform.data.channels import parse_channels

PAIRS = [["ear_tip_left", "ear_tip_right"], ["eye_left", "eye_right"],
         ["paw_left", "paw_right"]]


def _dataset(quokka_coco, augment, mode="resize"):
    coco = CocoKeypoints.load(quokka_coco)
    channels = resolve_channels(None, coco.categories, "quokka")
    flip = channels.flip_permutation(PAIRS, "pairs")
    augmenter = build_augmenter(augment, flip, seed=0)
    return KeypointDataset(coco, channels, input_size=(128, 192), resize_mode=mode,
                           augmenter=augmenter)


def test_loads_the_photo_and_all_keypoints(quokka_coco):
    dataset = _dataset(quokka_coco, [])
    assert dataset.channels.names == ("ear_tip_left", "ear_tip_right", "eye_left",
                                      "eye_right", "nose", "paw_left", "paw_right")
    sample = dataset[0]
    assert sample["image"].shape == (3, 128, 192)
    assert sample["image"].float().std() > 0.1 * 255  # a real photo, not a blank canvas
    np.testing.assert_allclose(sample["gt_xy"][4].numpy(), [[313.0, 270.0]])  # nose


def test_resize_maps_keypoints_and_back(quokka_coco):
    for mode in ("resize", "letterbox"):
        sample = _dataset(quokka_coco, [], mode)[0]
        sx, sy, tx, ty = sample["affine"].numpy()
        for target, gt in zip(sample["target_xy"], sample["gt_xy"], strict=True):
            back = (target.double().numpy() - [tx, ty]) / [sx, sy]
            np.testing.assert_allclose(back, gt.numpy(), atol=1e-4)


def test_flip_swaps_left_and_right(quokka_coco):
    plain = _dataset(quokka_coco, [])[0]["target_xy"]
    flipped = _dataset(quokka_coco, [{"name": "HorizontalFlip", "p": 1.0}])[0]["target_xy"]
    names = list(_dataset(quokka_coco, []).channels.names)
    width = 192
    for left, right in PAIRS:
        i, j = names.index(left), names.index(right)
        # the new left is the mirror of the old right, so left stays on the image's left
        np.testing.assert_allclose(flipped[i][0, 0], width - 1 - plain[j][0, 0], atol=1e-4)
        np.testing.assert_allclose(flipped[i][0, 1], plain[j][0, 1], atol=1e-4)
        assert flipped[i][0, 0] < flipped[j][0, 0]
    nose = names.index("nose")
    np.testing.assert_allclose(flipped[nose][0, 0], width - 1 - plain[nose][0, 0], atol=1e-4)


def test_channel_config_with_pairs_on_the_photo(quokka_coco):
    coco = CocoKeypoints.load(quokka_coco)
    specs = parse_channels("ear_tip_left=ear_tip_right:eye_left:eye_right")
    channels = resolve_channels(specs, coco.categories, "quokka")
    gathered = coco.image_keypoints(1, channels)
    assert [len(p) for p in gathered.points] == [2, 1, 1]
