"""COCO keypoint data: parsing and validation, channels, resizing, augmentation, datasets.

Also the synthetic dataset generator behind `kp data synth` (`synth.py`).
"""

from kp_platform.data.augment import Augmenter, build_augmenter
from kp_platform.data.channels import ChannelMap, ChannelSpec, parse_channels, resolve_channels
from kp_platform.data.check import format_summary, summarize_dataset
from kp_platform.data.coco import CocoKeypoints, ImageKeypoints
from kp_platform.data.dataset import (
    DatasetSplits,
    KeypointDataset,
    build_datasets,
    cache_split,
    collate_keypoints,
    single_instance_channels,
)
from kp_platform.data.image_io import read_rgb
from kp_platform.data.resize import Affine, resize_image
from kp_platform.data.split import split_train_val

__all__ = [
    "Affine",
    "Augmenter",
    "ChannelMap",
    "ChannelSpec",
    "CocoKeypoints",
    "DatasetSplits",
    "ImageKeypoints",
    "KeypointDataset",
    "build_augmenter",
    "build_datasets",
    "cache_split",
    "collate_keypoints",
    "format_summary",
    "parse_channels",
    "read_rgb",
    "resize_image",
    "resolve_channels",
    "single_instance_channels",
    "split_train_val",
    "summarize_dataset",
]
