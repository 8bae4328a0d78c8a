"""Plain-loop oracle for the keypoint metrics: the seed framework's semantics, step by step.

Deliberately naive (Python lists and loops, no vectorisation) so that it can be checked by eye
against the definition; the vectorised implementation in ``kp_platform.metrics`` is tested
against it. Inputs use the functional API's layout: ``detections[i][c]`` is an (n, 3) array of
(x, y, score) for image i, channel c, and ``ground_truth[i][c]`` an (m, 2) array of (x, y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Same tolerance as the seed: a detection exactly on the threshold circle still counts.
EPS = 1e-5


def _points(array: Any) -> list[list[float]]:
    """Turns an (n, k) array (or nested list) into a list of float rows."""
    return [[float(v) for v in row] for row in array]


def distance(ax: float, ay: float, bx: float, by: float) -> float:
    """L2 distance, written as sqrt(dx*dx + dy*dy) like the vectorised code (not hypot)."""
    dx = ax - bx
    dy = ay - by
    return math.sqrt(dx * dx + dy * dy)


def match_image(
    dets: list[list[float]], gts: list[list[float]], threshold: float, matching: str = "first"
) -> list[tuple[float, bool, float | None]]:
    """Greedy matching of one image and channel.

    Args:
        dets: Rows (x, y, score).
        gts: Rows (x, y).
        threshold: Distance threshold d in pixels.
        matching: "first" (first untaken GT in list order) or "nearest".

    Returns:
        One (score, is_tp, matched_distance or None) per detection, in score order.
    """
    order = sorted(range(len(dets)), key=lambda k: -dets[k][2])  # sorted() is stable
    taken = [False] * len(gts)
    out: list[tuple[float, bool, float | None]] = []
    for k in order:
        x, y, score = dets[k]
        chosen = -1
        best = math.inf
        for g in range(len(gts)):
            if taken[g]:
                continue
            dist = distance(x, y, gts[g][0], gts[g][1])
            if dist <= threshold + EPS:
                if matching == "first":
                    chosen = g
                    best = dist
                    break
                if dist < best:  # strict: ties keep the first in list order
                    chosen = g
                    best = dist
        if chosen >= 0:
            taken[chosen] = True
            out.append((score, True, best))
        else:
            out.append((score, False, None))
    return out


def _pooled(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel: int,
    threshold: float,
    matching: str,
) -> tuple[list[tuple[float, bool, float | None]], int]:
    """Classified detections of all images (image order, then score order) and N_gt."""
    pooled: list[tuple[float, bool, float | None]] = []
    num_gt = 0
    for image_dets, image_gts in zip(detections, ground_truth, strict=True):
        gts = _points(image_gts[channel])
        num_gt += len(gts)
        pooled.extend(match_image(_points(image_dets[channel]), gts, threshold, matching))
    return pooled, num_gt


def average_precision(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel: int,
    threshold: float,
    matching: str = "first",
) -> float:
    """AP of one channel at one threshold (steps 1-5 of the definition)."""
    pooled, num_gt = _pooled(detections, ground_truth, channel, threshold, matching)
    if num_gt == 0:
        return 0.0
    pooled = sorted(pooled, key=lambda item: -item[0])  # stable
    precision = [1.0]
    recall = [0.0]
    tp = 0
    fp = 0
    for _, is_tp, _ in pooled:
        if is_tp:
            tp += 1
        else:
            fp += 1
        precision.append(tp / (tp + fp) if tp > 0 else 0.0)
        recall.append(tp / num_gt if tp > 0 else 0.0)
    precision.append(0.0)
    recall.append(1.0)
    for i in range(len(precision) - 2, 0, -1):
        precision[i] = max(precision[i], precision[i + 1])
    ap = 0.0
    for i in range(len(precision) - 1):
        ap += (recall[i + 1] - recall[i]) * precision[i + 1]
    return ap


def pck(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel: int,
    threshold: float,
    matching: str = "first",
) -> float:
    """Fraction of ground-truth keypoints matched at the threshold (0.0 without GT)."""
    pooled, num_gt = _pooled(detections, ground_truth, channel, threshold, matching)
    if num_gt == 0:
        return 0.0
    matched = 0
    for _, is_tp, _ in pooled:
        if is_tp:
            matched += 1
    return matched / num_gt


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), q in [0, 100]."""
    ordered = sorted(values)
    pos = q / 100.0 * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distance_stats(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel: int,
    threshold: float,
    matching: str = "first",
) -> dict[str, float | None]:
    """Mean, p50 and p90 of matched-pair distances at ``threshold`` (None when nothing matched)."""
    pooled, _ = _pooled(detections, ground_truth, channel, threshold, matching)
    dists = [dist for _, is_tp, dist in pooled if is_tp and dist is not None]
    if not dists:
        return {"mean": None, "p50": None, "p90": None}
    total = 0.0
    for dist in dists:
        total += dist
    return {
        "mean": total / len(dists),
        "p50": percentile(dists, 50.0),
        "p90": percentile(dists, 90.0),
    }


def num_gt(ground_truth: Sequence[Sequence[Any]], channel: int) -> int:
    """Number of ground-truth keypoints of a channel over all images."""
    count = 0
    for image_gts in ground_truth:
        count += len(image_gts[channel])
    return count


def keypoint_metrics(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel_names: Sequence[str],
    thresholds: Sequence[float],
    matching: str = "first",
) -> dict[str, Any]:
    """All metrics in the project's metrics-JSON shape, each from the loops above."""
    keys = [format(float(t), "g") for t in thresholds]
    largest = max(float(t) for t in thresholds)
    ap: dict[str, dict[str, float]] = {}
    pck_out: dict[str, dict[str, float]] = {}
    dist_out: dict[str, dict[str, float | None]] = {}
    counts: dict[str, int] = {}
    for c, name in enumerate(channel_names):
        ap[name] = {}
        pck_out[name] = {}
        for key, t in zip(keys, thresholds, strict=True):
            ap[name][key] = average_precision(detections, ground_truth, c, float(t), matching)
            pck_out[name][key] = pck(detections, ground_truth, c, float(t), matching)
        dist_out[name] = distance_stats(detections, ground_truth, c, largest, matching)
        counts[name] = num_gt(ground_truth, c)
    mean_ap: dict[str, float] = {}
    for key in keys:
        total = 0.0
        for name in channel_names:
            total += ap[name][key]
        mean_ap[key] = total / len(channel_names)
    total = 0.0
    for name in channel_names:
        for key in keys:
            total += ap[name][key]
    return {
        "ap": ap,
        "mean_ap": mean_ap,
        "map": total / (len(channel_names) * len(keys)),
        "pck": pck_out,
        "distance_px": dist_out,
        "num_gt": counts,
        "num_images": len(detections),
    }
