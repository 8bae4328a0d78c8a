from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kp_platform.config import apply_overrides, load_config
from kp_platform.config.auto import resolve_auto
from kp_platform.data import (
    CocoKeypoints,
    KeypointDataset,
    build_datasets,
    cache_split,
    collate_keypoints,
    resolve_channels,
    split_train_val,
)
from kp_platform.errors import InputError
from tests.conftest import annotation, image, write_coco


def test_sample_and_batch_shapes(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    channels = resolve_channels(None, coco.categories, "t")
    dataset = KeypointDataset(coco, channels, input_size=(48, 64))
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_keypoints)))
    # uint8 through the loader; the data module makes it float once on the device
    assert batch["image"].shape == (3, 3, 48, 64) and batch["image"].dtype == torch.uint8
    assert batch["target_xy"].shape[:2] == (3, 6) and batch["target_mask"].shape[:2] == (3, 6)
    assert batch["gt_xy"].dtype == torch.float64
    assert batch["image_id"].tolist() == [1, 2, 3]
    assert batch["orig_size"].tolist() == [[24, 32]] * 3
    assert not batch["target_mask"][2].any()  # the negative image


def test_targets_are_scaled_and_gt_stays_in_original_pixels(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    channels = resolve_channels(None, coco.categories, "t")
    sample = KeypointDataset(coco, channels, input_size=(48, 64))[0]
    # towel.corner0 at (3.25, 4.5) in a 32x24 image, input 64x48: x' = (x + .5) * 2 - .5
    np.testing.assert_allclose(sample["gt_xy"][0].numpy(), [[3.25, 4.5]])
    np.testing.assert_allclose(sample["target_xy"][0].numpy(), [[7.0, 9.5]])
    sx, sy, tx, ty = sample["affine"].tolist()
    assert (sx, sy, tx, ty) == (2.0, 2.0, 0.5, 0.5)


def test_split_depends_only_on_split_seed():
    ids = list(range(1, 101))
    train, val = split_train_val(ids, 0.2, split_seed=3)
    assert len(val) == 20 and sorted(train + val) == ids
    assert split_train_val(ids, 0.2, split_seed=3) == (train, val)
    assert split_train_val(ids, 0.2, split_seed=4)[1] != val
    # adding images keeps most existing memberships
    _, val_more = split_train_val(ids + list(range(101, 111)), 0.2, split_seed=3)
    assert len(set(val) & set(val_more)) >= 15


def _cfg(train, **overrides):
    items = [f"data.train={train}", "data.input_size=[24, 32]", "data.val_fraction=0.5"]
    config = apply_overrides(load_config(), items + [f"{k}={v}" for k, v in overrides.items()])
    return resolve_auto(config)[0]


def test_build_datasets_splits_and_augments_only_training(tmp_path):
    images = [image(i) for i in range(1, 9)]
    anns = [annotation(i, i, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2]) for i in range(1, 9)]
    path = write_coco(tmp_path, images, anns)
    cfg = _cfg(path, **{"data.augment": "[{name: HorizontalFlip, p: 1.0}]",
                        "trainer.seed": 1})
    splits = build_datasets(cfg.data)
    assert len(splits.train) == 4 and len(splits.val) == 4
    assert not set(splits.train.image_ids) & set(splits.val.image_ids)
    flipped = splits.train[0]["target_xy"][0]
    plain = splits.val[0]["target_xy"][0]
    np.testing.assert_allclose(flipped.numpy(), [[27.0, 4.0]])  # x -> 31 - x
    np.testing.assert_allclose(plain.numpy(), [[4.0, 4.0]])
    # the training seed does not move the split
    other = build_datasets(apply_overrides(cfg, ["trainer.seed=2"]).data)
    assert other.val.image_ids == splits.val.image_ids


def test_separate_val_and_test_files(tmp_path):
    anns = [annotation(1, 1, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2])]
    train = write_coco(tmp_path / "train", [image(1)], anns)
    val = write_coco(tmp_path / "val", [image(1), image(2)], anns)
    splits = build_datasets(_cfg(train, **{"data.val": val, "data.test": val}).data)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1, 2, 2)


def test_val_file_with_other_channels_is_rejected(tmp_path):
    anns = [annotation(1, 1, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2])]
    train = write_coco(tmp_path / "train", [image(1)], anns)
    other = {"id": 1, "name": "box", "keypoints": ["a", "b", "c"]}
    val = write_coco(tmp_path / "val", [image(1)], anns, categories=[other])
    with pytest.raises(InputError, match="differ from the training set's"):
        build_datasets(_cfg(train, **{"data.val": val}).data)


def test_replay_images_join_training_only(tmp_path):
    anns = [annotation(i, i, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2]) for i in range(1, 4)]
    train = write_coco(tmp_path / "train", [image(1)], anns[:1])
    val = write_coco(tmp_path / "val", [image(1)], anns[:1])
    replay = write_coco(tmp_path / "replay", [image(i, width=40) for i in range(1, 4)], anns)
    cfg = _cfg(train, **{"data.val": val, "data.replay": replay})
    splits = build_datasets(cfg.data)
    assert (len(splits.train), len(splits.val)) == (4, 1)
    assert [int(splits.train[i]["orig_size"][1]) for i in range(4)] == [32, 40, 40, 40]
    two = build_datasets(apply_overrides(cfg, ["data.replay_images=2"]).data).train
    again = build_datasets(apply_overrides(cfg, ["data.replay_images=2", "trainer.seed=5"]).data)
    assert len(two) == 3
    assert two.datasets[1].image_ids == again.train.datasets[1].image_ids  # a fixed subset


def test_replay_file_with_other_channels_is_rejected(tmp_path):
    anns = [annotation(1, 1, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2])]
    train = write_coco(tmp_path / "train", [image(1), image(2)], anns)
    other = {"id": 1, "name": "box", "keypoints": ["a", "b", "c"]}
    replay = write_coco(tmp_path / "replay", [image(1)], anns, categories=[other])
    with pytest.raises(InputError, match="differ from the training set's") as error:
        build_datasets(_cfg(train, **{"data.replay": replay}).data)
    assert str(replay) in str(error.value)


def test_missing_train_file_is_an_input_error():
    with pytest.raises(InputError, match="data.train must name"):
        build_datasets(load_config().data)


def test_cached_images_give_the_same_samples_and_survive_augmentation(tmp_path, capsys):
    images = [image(i) for i in range(1, 9)]
    anns = [annotation(i, i, 1, [4.0, 4.0, 2, 20.0, 4.0, 2, 10.0, 10.0, 2]) for i in range(1, 9)]
    path = write_coco(tmp_path, images, anns)
    cfg = _cfg(path, **{"data.augment": "[{name: HorizontalFlip, p: 1.0}]"})
    read = build_datasets(cfg.data)
    cached = build_datasets(cfg.data)
    # 4 images of 24 x 32 x 3 bytes: over a 0 MiB budget nothing is cached.
    assert not cache_split(cached.train, 0) and cached.train._cached is None
    assert cache_split(cached.train, 1) and cache_split(cached.val, 1)
    for name in ("train", "val"):
        for index in range(4):
            a, b = getattr(read, name)[index], getattr(cached, name)[index]
            assert torch.equal(a["image"], b["image"])
            torch.testing.assert_close(a["target_xy"], b["target_xy"])
    # The flip worked on a copy: the cached image is still the one read from disk.
    assert np.array_equal(cached.train._cached[0][0], read.train._read(0)[0])
    # A split over the budget says so and reads from disk: 4 x 512² x 3 bytes > 1 MiB.
    large = build_datasets(apply_overrides(cfg, ["data.input_size=[512, 512]"]).data)
    assert not cache_split(large.train, 1) and large.train._cached is None
    assert "4 images need 3 MiB in memory, over 1; reading them from disk at every epoch" in \
        capsys.readouterr().out
