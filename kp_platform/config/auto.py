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
