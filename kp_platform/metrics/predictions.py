"""Prediction files and offline evaluation against COCO ground truth.

Prediction format (JSON): `[{"image_id": 1, "detections": {"corner": [[x, y, score], ...]}}, ...]`
in original-image pixels. Ground truth goes through the same channel gathering as training, so a
checkpoint scores the same offline as in validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kp_platform.data.channels import ChannelMap, parse_channels, resolve_channels
from kp_platform.data.coco import CocoKeypoints
from kp_platform.errors import InputError
from kp_platform.files import read_json
from kp_platform.metrics.average_precision import compute_keypoint_metrics
from kp_platform.metrics.top1 import top1_pairs, top1_summary

Detections = dict[int, list[np.ndarray]]


def evaluate_predictions(
    gt: str | Path | CocoKeypoints | dict[str, Any],
    predictions: str | Path | list[dict[str, Any]],
    channels: Any,
    thresholds: Sequence[float],
    matching: str = "first",
    visible_only: bool = False,
    pixel_origin: str = "center",
) -> dict[str, Any]:
    """Scores a prediction file against a COCO keypoint dataset.

    Args:
        gt: COCO keypoint JSON path, the dict `json.load` made of one, or a loaded
            CocoKeypoints (which keeps its own pixel origin).
        predictions: Prediction JSON path or the already-loaded list.
        channels: A ChannelMap, or any channel configuration `parse_channels` accepts.
        thresholds: L2 distances in original-image pixels.
        matching: "first" (the seed framework's rule) or "nearest".
        visible_only: Drop occluded (v=1) ground truth, as `data.visible_only` does.
        pixel_origin: The pixel convention both files are written in ("center" or "corner").

    Returns:
        The metrics dict (README, "Metrics"): ap, mean_ap, map, pck, distance_px, num_gt,
        num_images, and `top1` (`kp_platform.metrics.top1`) for the channels with at most one
        labelled keypoint in every image, scored by their best-scoring detection. Images
        without a prediction entry count as having no detections.

    Raises:
        InputError: bad files or values, or arguments of another type than listed.
    """
    coco = _ground_truth(gt, pixel_origin)
    if not isinstance(channels, ChannelMap):
        specs = parse_channels(channels, source=str(channels))
        channels = resolve_channels(specs, coco.categories, source=str(coco.path))
    thresholds = _thresholds(thresholds)
    if matching not in ("first", "nearest"):
        raise InputError(f"must be 'first' or 'nearest', got {matching!r}", "matching")
    if isinstance(predictions, (str, Path)):
        source, entries = str(predictions), read_predictions(predictions)
    elif isinstance(predictions, (list, tuple)):
        source, entries = "predictions", list(predictions)
    else:
        raise InputError("expected a prediction JSON path or a list of {image_id, detections} "
                         f"entries, got {type(predictions).__name__}", "predictions")
    detections = parse_predictions(entries, coco, channels.names, source)
    if coco.offset:  # into this project's convention, as the ground truth is
        for arrays in detections.values():
            for points in arrays:
                points[:, :2] -= coco.offset
    ground_truth, per_image_detections = [], []
    empty = [np.zeros((0, 3)) for _ in channels.names]
    for image in coco.images:
        ground_truth.append(coco.image_keypoints(image.id, channels, visible_only).points)
        per_image_detections.append(detections.get(image.id, empty))
    metrics = compute_keypoint_metrics(
        per_image_detections, ground_truth, list(channels.names), thresholds, matching
    )
    top1 = _top1(per_image_detections, ground_truth, coco, list(channels.names), thresholds)
    if top1 is not None:
        metrics["top1"] = top1
    return metrics


def _top1(detections: list[list[np.ndarray]], ground_truth: list[list[np.ndarray]],
          coco: CocoKeypoints, names: list[str],
          thresholds: list[float]) -> dict[str, Any] | None:
    """The top-1 metrics of the channels with at most one labelled point in every image."""
    single = [c for c in range(len(names))
              if all(len(points[c]) <= 1 for points in ground_truth)]
    if not single or not coco.images:
        return None
    num, channels = len(ground_truth), len(names)
    peak = np.zeros((num, channels, 1, 2))
    found = np.zeros((num, channels, 1), dtype=bool)
    most = max(1, max(len(p) for points in ground_truth for p in points))
    gt = np.zeros((num, channels, most, 2))
    labelled = np.zeros((num, channels, most), dtype=bool)
    for i, (dets, points) in enumerate(zip(detections, ground_truth, strict=True)):
        for c in range(channels):
            if len(dets[c]):
                peak[i, c, 0] = dets[c][np.argmax(dets[c][:, 2]), :2]
                found[i, c, 0] = True
            gt[i, c, :len(points[c])] = points[c]
            labelled[i, c, :len(points[c])] = True
    sizes = torch.tensor([[image.height, image.width] for image in coco.images])
    pairs = top1_pairs(torch.from_numpy(peak), torch.from_numpy(found), torch.from_numpy(gt),
                       torch.from_numpy(labelled), sizes, single)
    return top1_summary(pairs["error"], pairs["channel"], pairs["swapped"], pairs["found"],
                        [names[c] for c in single], thresholds)


def _ground_truth(gt: Any, pixel_origin: str) -> CocoKeypoints:
    if isinstance(gt, CocoKeypoints):
        return gt
    if isinstance(gt, dict):
        # No file: image paths are relative to the working directory (never opened here).
        return CocoKeypoints.from_dict(gt, "gt", check_images=False, pixel_origin=pixel_origin)
    if isinstance(gt, (str, Path)):
        return CocoKeypoints.load(gt, check_images=False, pixel_origin=pixel_origin)
    raise InputError("expected a COCO JSON path, a COCO dict (from json.load) or a "
                     f"CocoKeypoints, got {type(gt).__name__}", "gt")


def _thresholds(thresholds: Any) -> list[float]:
    values = [thresholds] if isinstance(thresholds, (int, float, str)) else thresholds
    try:
        values = list(values)
    except TypeError:
        values = None
    ok = bool(values) and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and _is_finite(t) and t > 0
        for t in values
    )
    if not ok:
        raise InputError(f"expected a list of positive distances, got {thresholds!r}",
                         "thresholds")
    return [float(t) for t in values]


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Reads a prediction JSON file (structure is checked by `parse_predictions`)."""
    return read_json(path)


def parse_predictions(
    entries: Any, coco: CocoKeypoints, channel_names: Sequence[str], source: str
) -> Detections:
    """Checks prediction entries and turns them into per-image, per-channel (n, 3) arrays.

    Raises:
        InputError: not a list of entries, an unknown image id or channel, a repeated image,
            a detection that is not [x, y, score], NaN or infinite values.
    """
    if not isinstance(entries, list):
        raise InputError("expected a JSON list of {image_id, detections} entries", source)
    index = {name: c for c, name in enumerate(channel_names)}
    detections: Detections = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("detections"), dict):
            raise InputError(f"entry {n}: expected {{image_id, detections: {{...}}}}", source)
        image_id = entry.get("image_id")
        if not isinstance(image_id, int) or image_id not in coco.image_by_id:
            raise InputError(f"entry {n}: unknown image id {image_id!r}", source)
        if image_id in detections:
            raise InputError(f"image {image_id}: predicted more than once", source)
        arrays = [np.zeros((0, 3)) for _ in channel_names]
        for name, points in entry["detections"].items():
            if name not in index:
                raise InputError(
                    f"image {image_id}: unknown channel {name!r}; channels are "
                    f"{list(channel_names)}",
                    source,
                )
            arrays[index[name]] = _detection_array(points, image_id, name, source)
        detections[image_id] = arrays
    return detections


def _detection_array(points: Any, image_id: int, channel: str, source: str) -> np.ndarray:
    where = f"image {image_id}, channel {channel!r}"
    if not isinstance(points, list):
        raise InputError(f"{where}: expected a list of [x, y, score]", source)
    for k, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 3:
            raise InputError(f"{where}: detection {k} is not [x, y, score]", source)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point):
            raise InputError(f"{where}: detection {k} has non-numeric values", source)
        if not all(_is_finite(v) for v in point):
            raise InputError(f"{where}: detection {k} has NaN or infinite values", source)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def _is_finite(value: int | float) -> bool:
    """A finite float, or an int that converts to one (10**400 does not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
