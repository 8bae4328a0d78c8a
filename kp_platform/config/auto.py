"""Defaults that depend on the data: `auto` values, resolved once the input size is known.

A run resolves them before it builds anything, prints what it chose, and stores the concrete
values in its `config.yaml` and checkpoints, so a checkpoint holds no `auto` its run used
(`data.val_fraction` stays `auto` where `data.val` is a file of its own).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kp_platform.config.schema import AUTO, Config

MIN_HEATMAP_SIDE = 128
"""`heatmap.stride: auto` picks the largest stride (1, 2, 4 or 8) that keeps the heatmap's
shorter side at >= 128 cells (or 1 below that)."""


MAX_BOTTLENECK_SIDE = 8
"""`model.depth: auto` (unet): down-sample until the input's shorter side spans at most this
many cells, so the receptive field spans the frame. On mirror-mouse (256², benchmarks/RESULTS.md)
the side-view paws are told apart only by the bottom view 150-200 px away: depth 4 (a 16²
bottleneck) gave 8.99 px mean top-1 error (seed 0), depth 5 7.33-7.75 px (3 seeds)."""
DEFAULT_DEPTH = 4
"""`model.depth: auto` for backbones other than the unet (dilated blocks)."""

TARGET_STEPS = 1000
"""`trainer.max_epochs: auto` trains for about this many optimiser steps (at least 20 epochs).
Measured on real frames (mirror-mouse, 58 training images, benchmarks/RESULTS.md): 20 epochs
(160 steps) left 29% of look-alike paws swapped (32 px mean error); 640-1000 steps left 7-9%
(8-9 px, median 2-3 px, one seed); with `model.depth: auto` 1000 steps gave 7.3-7.8 px on 3
seeds, 591 s on 2 idle CPU cores at 256²."""
EVALUATIONS = 20
"""`eval.eval_every: auto` evaluates about this many times per run."""
MIN_EPOCHS = 20

MIN_RANKING_IMAGES = 100
"""Validation images needed to rank checkpoints. Below this, `eval.keep: auto` keeps the final
weights (the cosine schedule ends there) and `data.val_fraction: auto` holds out
`SMALL_SET_VAL_FRACTION` instead of `VAL_FRACTION`: on mirror-mouse (72 labelled frames,
benchmarks/RESULTS.md), 14 held-out frames chose checkpoints worse than the final weights
(8.96 against 8.31 px mean top-1 error over 3 seeds), and training on the frames held out gained
more (6.99 px with 71 frames trained)."""
VAL_FRACTION = 0.2
SMALL_SET_VAL_FRACTION = 0.05
"""What Lightning Pose (`val_prob`) and DeepLabCut (a 95% training fraction) hold out."""


def default_augmentation(flip_pairs: list[list[str]]) -> list[dict[str, Any]]:
    """`data.augment: auto`: a random rotation (±20°), scale (0.85-1.15) and shift (±5%) in half
    of the training images, and a horizontal flip in half of them when `data.flip_pairs`
    declares which channels a flip swaps (without pairs a flip would teach left = right)."""
    transforms: list[dict[str, Any]] = [
        {"name": "Affine", "rotate": [-20, 20], "scale": [0.85, 1.15],
         "translate_percent": [-0.05, 0.05], "p": 0.5}]
    if flip_pairs:
        transforms.append({"name": "HorizontalFlip", "p": 0.5})
    return transforms


def val_fraction_for(setting: float | str, num_images: int) -> float:
    """The share of `num_images` labelled images that `data.val_fraction` (`setting`) splits
    off: the setting itself, or for `auto` `VAL_FRACTION` where that is at least
    `MIN_RANKING_IMAGES` images, else `SMALL_SET_VAL_FRACTION`."""
    if setting != AUTO:
        return float(setting)
    if round(num_images * VAL_FRACTION) >= MIN_RANKING_IMAGES:
        return VAL_FRACTION
    return SMALL_SET_VAL_FRACTION


def search_val_fraction(config: Config, ranking: bool) -> float | str:
    """The `data.val_fraction` a sweep runs its base `config` with; `ranking`: whether it ranks
    several trials. Trials are ranked on the validation split: where the base splits it off
    `data.train` and leaves its share to `auto` (5% of a small set in a single run, too few
    images to rank by), a sweep of several trials holds out `VAL_FRACTION`. One trial ranks
    nothing and keeps the single run's split; a set share, or a validation file of its own, is
    kept."""
    data = config.data
    if data.val_fraction == AUTO and not data.val and ranking:
        return VAL_FRACTION
    return data.val_fraction


def eval_every_for(max_epochs: int) -> int:
    """The `auto` evaluation period of a run of `max_epochs` epochs: about `EVALUATIONS`
    evaluations in the run."""
    return max(1, round(max_epochs / EVALUATIONS))


def unet_depth_for(input_size: list[int]) -> int:
    """The `auto` unet depth for a [height, width] network input."""
    depth = 1
    while min(input_size) / 2**depth > MAX_BOTTLENECK_SIDE:
        depth += 1
    return depth


def heatmap_stride_for(input_size: list[int]) -> int:
    """The `auto` heatmap stride for a [height, width] network input."""
    stride = 1
    while stride < 8 and min(input_size) // (2 * stride) >= MIN_HEATMAP_SIDE:
        stride *= 2
    return stride


def resolve_from_data(config: Config, channel_names: list[str], single_instance: list[str],
                      train_images: int, val_images: int | None = None,
                      split_fraction: float | None = None) -> tuple[Config, dict[str, str]]:
    """Resolves the `auto` values that depend on the training data: `trainer.max_epochs`,
    `eval.eval_every`, `eval.top1_channels`, `eval.best_by`, and with the validation set's
    size `data.val_fraction` and `eval.keep`.

    Args:
        config: The config.
        channel_names: Every channel, in order.
        single_instance: The channels with at most one labelled keypoint in every training
            image (`kp_platform.data.single_instance_channels`).
        train_images: Images in the training set (one epoch).
        val_images: Images in the validation set; None leaves `eval.keep` as it is.
        split_fraction: The share of `data.train` split off for validation
            (`val_fraction_for`); None when `data.val` is a file of its own.

    Returns:
        The resolved config (a copy) and a line per `auto` key saying what was chosen and why.
    """
    chosen: dict[str, str] = {}
    trainer = config.trainer
    if trainer.max_epochs == AUTO:
        steps = max(1, math.ceil(train_images / config.data.batch_size))
        epochs = max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps))
        trainer = dataclasses.replace(trainer, max_epochs=epochs)
        chosen["trainer.max_epochs"] = (
            f"{epochs} ({train_images} training images at batch {config.data.batch_size}: "
            f"{steps} steps an epoch, {epochs * steps} steps in all; at least {MIN_EPOCHS} "
            f"epochs, about {TARGET_STEPS} steps)")
    evaluation = config.eval
    if evaluation.eval_every == AUTO:
        every = eval_every_for(trainer.max_epochs)
        evaluation = dataclasses.replace(evaluation, eval_every=every)
        chosen["eval.eval_every"] = f"{every} (about {EVALUATIONS} evaluations in the run)"
    if evaluation.top1_channels == AUTO:
        evaluation = dataclasses.replace(evaluation, top1_channels=list(single_instance))
        chosen["eval.top1_channels"] = (
            f"{list(single_instance)} (at most one labelled keypoint per training image)"
            if single_instance else "[] (every channel has several keypoints in some image)")
    if evaluation.best_by == AUTO:
        every = bool(channel_names) and set(evaluation.top1_channels) >= set(channel_names)
        best_by = "mean_px_error" if every else "map"
        evaluation = dataclasses.replace(evaluation, best_by=best_by)
        chosen["eval.best_by"] = (
            "mean_px_error (every channel is a top-1 channel: the best evaluation has the lowest "
            "val/mean_px_error)" if every else
            "map (not every channel is a top-1 channel: the best evaluation has the highest "
            "val/map)")
    if evaluation.keep == AUTO and val_images is not None:
        keep = "final" if val_images < MIN_RANKING_IMAGES else "best"
        evaluation = dataclasses.replace(evaluation, keep=keep)
        chosen["eval.keep"] = (
            f"final (a validation set of {val_images} image{'s' * (val_images != 1)}, fewer "
            f"than {MIN_RANKING_IMAGES}, cannot rank checkpoints: best.ckpt holds the final "
            "weights)" if keep == "final" else
            f"best (a validation set of {val_images} images: best.ckpt holds the best "
            "evaluation)")
    data = config.data
    if data.val_fraction == AUTO and split_fraction is not None:
        data = dataclasses.replace(data, val_fraction=split_fraction)
        share = ("" if split_fraction == VAL_FRACTION else
                 f"; {VAL_FRACTION:.0%} would hold out fewer than {MIN_RANKING_IMAGES}")
        chosen["data.val_fraction"] = (
            f"{split_fraction} ({val_images} of data.train's images held out for validation"
            f"{share})")
    return dataclasses.replace(config, data=data, eval=evaluation, trainer=trainer), chosen


def resolve_auto(config: Config) -> tuple[Config, dict[str, str]]:
    """Replaces every `auto` value with the one chosen for this config's data.

    Returns:
        The resolved config (a copy) and, per key that was `auto`, a line saying what was chosen
        and why (empty when nothing was `auto`).
    """
    chosen: dict[str, str] = {}
    heatmap = config.heatmap
    if heatmap.stride == AUTO:
        height, width = config.data.input_size
        stride = heatmap_stride_for(config.data.input_size)
        heatmap = dataclasses.replace(heatmap, stride=stride)
        chosen["heatmap.stride"] = (
            f"{stride} (input {height}x{width}: heatmaps of {-(-height // stride)}x"
            f"{-(-width // stride)} cells, the largest stride keeping >= {MIN_HEATMAP_SIDE} "
            "cells per side)"
        )
    model = config.model
    if model.depth == AUTO:
        height, width = config.data.input_size
        if model.backbone == "unet":
            depth = unet_depth_for(config.data.input_size)
            reason = (f"input {height}x{width}: a bottleneck of {-(-height // 2**depth)}x"
                      f"{-(-width // 2**depth)} cells, at most {MAX_BOTTLENECK_SIDE} per side")
        else:
            depth, reason = DEFAULT_DEPTH, f"the default for {model.backbone}"
        model = dataclasses.replace(model, depth=depth)
        chosen["model.depth"] = f"{depth} ({reason})"
    data = config.data
    if data.augment == AUTO:
        data = dataclasses.replace(data, augment=default_augmentation(data.flip_pairs))
        names = " + ".join(t["name"] for t in data.augment)
        chosen["data.augment"] = (
            f"{names} (rotation ±20°, scale 0.85-1.15, shift ±5%"
            + (", flips swapping data.flip_pairs)" if data.flip_pairs else
               "; no flip: no data.flip_pairs)"))
    return dataclasses.replace(config, heatmap=heatmap, model=model, data=data), chosen
