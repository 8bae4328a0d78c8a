"""Defaults that depend on the data: `auto` values, resolved once the input size is known.

A run resolves them before it builds anything, prints what it chose, and stores the concrete
values in its `config.yaml` and checkpoints, so a checkpoint never holds `auto`.
"""

from __future__ import annotations

import dataclasses

from kp_platform.config.schema import AUTO, Config

MIN_HEATMAP_SIDE = 128
"""`heatmap.stride: auto` picks the largest stride (1, 2, 4 or 8) that keeps the heatmap's
shorter side at >= 128 cells (or 1 below that)."""


def heatmap_stride_for(input_size: list[int]) -> int:
    """The `auto` heatmap stride for a [height, width] network input."""
    stride = 1
    while stride < 8 and min(input_size) // (2 * stride) >= MIN_HEATMAP_SIDE:
        stride *= 2
    return stride


def resolve_top1(config: Config, channel_names: list[str],
                 single_instance: list[str]) -> tuple[Config, dict[str, str]]:
    """Resolves `eval.top1_channels` and `eval.best_by` from the training data.

    Args:
        config: The config.
        channel_names: Every channel, in order.
        single_instance: The channels with at most one labelled keypoint in every training
            image (`kp_platform.data.single_instance_channels`).

    Returns:
        The resolved config (a copy) and a line per `auto` key saying what was chosen and why.
    """
    chosen: dict[str, str] = {}
    evaluation = config.eval
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
            "mean_px_error (every channel is a top-1 channel: best.ckpt keeps the lowest "
            "val/mean_px_error)" if every else
            "map (not every channel is a top-1 channel: best.ckpt keeps the highest val/map)")
    return dataclasses.replace(config, eval=evaluation), chosen


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
    return dataclasses.replace(config, heatmap=heatmap), chosen
