"""The torch Dataset of images and per-channel keypoints, its collate function, and the splits.

A batch carries two views of the ground truth: `target_*` in network-input pixels after resizing
and augmentation (what heatmaps are drawn from) and `gt_*` in original-image pixels before any
augmentation (what metrics compare against), so distances are always in original pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from kp_platform.config.auto import val_fraction_for
from kp_platform.config.schema import AUTO
from kp_platform.data.augment import Augmenter, build_augmenter
from kp_platform.data.channels import ChannelMap, parse_channels, resolve_channels
from kp_platform.data.coco import CocoKeypoints, ImageKeypoints
from kp_platform.data.image_io import read_rgb
from kp_platform.data.resize import Affine, resize_affine, resize_image
from kp_platform.data.split import pick_images, split_train_val
from kp_platform.errors import InputError


class KeypointDataset(Dataset):
    """Images of a COCO dataset with their keypoints gathered per channel.

    Args:
        coco: The validated dataset.
        channels: Channels resolved against `coco`'s categories.
        image_ids: The images to serve (default: all, in file order).
        input_size: Network input (height, width).
        resize_mode: "resize" or "letterbox".
        visible_only: Drop occluded (v=1) keypoints.
        augmenter: Training augmentation, or None (validation and test never augment).
    """

    def __init__(
        self,
        coco: CocoKeypoints,
        channels: ChannelMap,
        image_ids: Sequence[int] | None = None,
        input_size: Sequence[int] = (256, 256),
        resize_mode: str = "resize",
        visible_only: bool = False,
        augmenter: Augmenter | None = None,
    ) -> None:
        self.coco = coco
        self.channels = channels
        self.image_ids = list(image_ids) if image_ids is not None else [i.id for i in coco.images]
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize_mode = resize_mode
        self.augmenter = augmenter
        self.keypoints: list[ImageKeypoints] = [
            coco.image_keypoints(i, channels, visible_only) for i in self.image_ids
        ]
        self._cached: list[tuple[np.ndarray, Affine]] | None = None

    @property
    def cache_bytes(self) -> int:
        """What `cache_images` would hold: every image at the input size, uint8 RGB."""
        return len(self) * self.input_size[0] * self.input_size[1] * 3

    def cache_images(self) -> None:
        """Reads and resizes every image once, in threads, and serves them from memory.

        Call it in the process that builds the loader: forked loader workers then share the
        images instead of decoding each one at every epoch.
        """
        if self._cached is not None:
            return
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            self._cached = list(pool.map(self._read, range(len(self))))

    def _read(self, index: int) -> tuple[np.ndarray, Affine]:
        record = self.coco.image_by_id[self.image_ids[index]]
        return resize_image(read_rgb(record.path), self.input_size, self.resize_mode)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample.

        Returns:
            image: (3, H, W) uint8 RGB (`to_unit_float` on the device makes it float32 in
            [0, 1]); target_xy: per channel (n_c, 2) float32 in input
            pixels; gt_xy: per channel (n_c, 2) float64 in original pixels; affine: (4,) float64
            [sx, sy, tx, ty] with x_in = sx * x_orig + tx; image_id: int; index: int (the
            dataset index, which orders images for the metric across processes);
            orig_size: (2,) [h, w].
        """
        record = self.coco.image_by_id[self.image_ids[index]]
        gt = self.keypoints[index].points
        image, affine = self._read(index) if self._cached is None else self._cached[index]
        points = affine.apply(np.concatenate(gt)) if gt else np.zeros((0, 2))
        channel_ids = np.repeat(np.arange(len(gt)), [len(p) for p in gt])
        if self.augmenter is not None:
            image, points, channel_ids = self.augmenter(image.copy(), points, channel_ids)
        target = [points[channel_ids == c] for c in range(len(self.channels))]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            "target_xy": [torch.as_tensor(t, dtype=torch.float32) for t in target],
            "gt_xy": [torch.as_tensor(g, dtype=torch.float64) for g in gt],
            "affine": torch.as_tensor(affine.as_array()),
            "image_id": record.id,
            "index": index,
            "orig_size": torch.tensor([record.height, record.width]),
        }


def _parts(dataset: KeypointDataset | ConcatDataset) -> list[KeypointDataset]:
    """The KeypointDatasets a split is made of (one, or those a ConcatDataset joins)."""
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


def single_instance_channels(dataset: KeypointDataset | ConcatDataset) -> list[str]:
    """The channels with at most one labelled keypoint in every image of `dataset`."""
    parts = _parts(dataset)
    names = parts[0].channels.names
    most = [0] * len(names)
    for part in parts:
        for image in part.keypoints:
            most = [max(m, len(points)) for m, points in zip(most, image.points, strict=True)]
    return [name for name, m in zip(names, most, strict=True) if m <= 1]


def single_points(dataset: KeypointDataset | ConcatDataset, channels: Sequence[int]
                  ) -> np.ndarray:
    """Every image's labelled point of each of `channels` (single-instance ones) in network-input
    pixels, before augmentation: an (N, len(channels), 2) array, NaN where a point is
    unlabelled. Reads no image."""
    parts = _parts(dataset)
    rows = []
    for part in parts:
        for image_id, image in zip(part.image_ids, part.keypoints, strict=True):
            record = part.coco.image_by_id[image_id]
            affine = resize_affine(record.height, record.width, part.input_size,
                                   part.resize_mode)
            row = np.full((len(channels), 2), np.nan)
            for slot, channel in enumerate(channels):
                if len(image.points[channel]) == 1:
                    row[slot] = affine.apply(image.points[channel])[0]
            rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, len(channels), 2))


def cache_split(dataset: KeypointDataset | ConcatDataset, max_mb: int) -> bool:
    """Caches a split's images in memory (`KeypointDataset.cache_images`) when they fit in
    `max_mb` MiB; says so when they do not. Returns whether they are cached."""
    parts = _parts(dataset)
    need = sum(part.cache_bytes for part in parts)
    if max_mb <= 0:
        return False
    if need > max_mb * 2**20:
        print(f"data.cache_mb: {sum(len(p) for p in parts)} images need {need / 2**20:.0f} MiB "
              f"in memory, over {max_mb}; reading them from disk at every epoch")
        return False
    for part in parts:
        part.cache_images()
    return True


def collate_keypoints(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks samples, padding each channel's keypoints to the batch's largest count.

    Returns:
        image: (B, 3, H, W); target_xy: (B, C, K, 2) float32 with target_mask: (B, C, K) bool;
        gt_xy: (B, C, G, 2) float64 with gt_mask: (B, C, G) bool; affine: (B, 4) float64;
        image_id: (B,) int64; index: (B,) int64; orig_size: (B, 2) int64. K and G are at least 1.
    """
    target_xy, target_mask = _pad([s["target_xy"] for s in samples], torch.float32)
    gt_xy, gt_mask = _pad([s["gt_xy"] for s in samples], torch.float64)
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "target_xy": target_xy,
        "target_mask": target_mask,
        "gt_xy": gt_xy,
        "gt_mask": gt_mask,
        "affine": torch.stack([s["affine"] for s in samples]),
        "image_id": torch.tensor([s["image_id"] for s in samples], dtype=torch.int64),
        "index": torch.tensor([s.get("index", -1) for s in samples], dtype=torch.int64),
        "orig_size": torch.stack([s["orig_size"] for s in samples]),
    }


def _pad(
    per_sample: list[list[torch.Tensor]], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, num_channels = len(per_sample), len(per_sample[0])
    longest = max([1] + [len(points) for sample in per_sample for points in sample])
    xy = torch.zeros(batch, num_channels, longest, 2, dtype=dtype)
    mask = torch.zeros(batch, num_channels, longest, dtype=torch.bool)
    for b, sample in enumerate(per_sample):
        for c, points in enumerate(sample):
            xy[b, c, : len(points)] = points.to(dtype)
            mask[b, c, : len(points)] = True
    return xy, mask


@dataclass
class DatasetSplits:
    """The datasets one training run uses; `test` is None when no test file is configured."""

    channels: ChannelMap
    train: KeypointDataset | ConcatDataset
    """A KeypointDataset, or one concatenated with the `data.replay` images."""
    val: KeypointDataset
    test: KeypointDataset | None
    split_fraction: float | None = None
    """The share of `data.train` split off as `val` (`data.val_fraction`, resolved); None when
    `data.val` is a file of its own."""


def build_datasets(data_cfg: Any, augment_seed: int | None = None,
                   load: Callable[..., CocoKeypoints] = CocoKeypoints.load) -> DatasetSplits:
    """Builds train/val/test datasets from the `data` config section.

    Validation comes from `data.val`, or else from a split of `data.train` that depends only on
    `data.split_seed`. Only the training set is augmented.

    Args:
        data_cfg: The `data` config section, resolved (`data.augment` a list, not `auto`).
        augment_seed: Seeds the training augmentation.
        load: Reads and checks one COCO file (a sweep's pre-flight passes one that reads each
            file once for all its configurations).

    Raises:
        InputError: no training file, bad files, channels or augmentation.
    """
    if not data_cfg.train:
        raise InputError("data.train must name a COCO keypoint JSON file", "config")
    specs = parse_channels(data_cfg.channels, source="data.channels")
    origin = data_cfg.pixel_origin
    train_coco = load(data_cfg.train, pixel_origin=origin)
    channels = resolve_channels(specs, train_coco.categories, source=str(data_cfg.train))
    flip = channels.flip_permutation(data_cfg.flip_pairs, source="data.flip_pairs")
    common = {
        "input_size": data_cfg.input_size,
        "resize_mode": data_cfg.resize_mode,
        "visible_only": data_cfg.visible_only,
    }
    if data_cfg.augment == AUTO:
        raise ValueError("data.augment is still 'auto': resolve the config first "
                         "(config.auto.resolve_auto)")
    augmenter = build_augmenter(data_cfg.augment, flip, seed=augment_seed)

    def same_channels(path: str) -> tuple[CocoKeypoints, ChannelMap]:
        coco = load(path, pixel_origin=origin)
        resolved = resolve_channels(specs, coco.categories, source=str(path))
        if resolved.names != channels.names:
            raise InputError(
                f"channels {list(resolved.names)} differ from the training set's "
                f"{list(channels.names)}",
                str(path),
            )
        return coco, resolved

    def evaluation_set(path: str) -> KeypointDataset:
        return KeypointDataset(*same_channels(path), **common)

    split_fraction = None
    if data_cfg.val:
        train = KeypointDataset(train_coco, channels, augmenter=augmenter, **common)
        val = evaluation_set(data_cfg.val)
    else:
        ids = [image.id for image in train_coco.images]
        split_fraction = val_fraction_for(data_cfg.val_fraction, len(ids))
        train_ids, val_ids = split_train_val(ids, split_fraction, data_cfg.split_seed)
        if not val_ids:
            raise InputError("too few images to split off a validation set", data_cfg.train)
        train = KeypointDataset(train_coco, channels, train_ids, augmenter=augmenter, **common)
        val = KeypointDataset(train_coco, channels, val_ids, **common)
    if data_cfg.replay:
        coco, resolved = same_channels(data_cfg.replay)
        ids = pick_images([image.id for image in coco.images], data_cfg.replay_images,
                          data_cfg.split_seed)
        replay = KeypointDataset(coco, resolved, ids, augmenter=augmenter, **common)
        train = ConcatDataset([train, replay])
    test = evaluation_set(data_cfg.test) if data_cfg.test else None
    return DatasetSplits(channels, train, val, test, split_fraction)
