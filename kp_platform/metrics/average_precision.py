"""Keypoint AP, PCK and distance statistics with the seed framework's semantics.

Definition (one channel, one threshold d):

1. Per image, detections sorted by score (descending, stable) each take the first ground-truth
   keypoint in list order that is free and within ``d + 1e-5`` pixels (true positive), else they
   are false positives. ``matching="nearest"`` takes the nearest free keypoint instead.
2. The classified detections of all images are pooled in image order and sorted by score,
   descending and stably (so score ties across images go to the earlier image).
3. The PR curve starts at (precision 1, recall 0), gets one point per detection and ends at
   (precision 0, recall 1); precision is made non-increasing from the right and
   ``AP = sum_i (r[i+1] - r[i]) * p[i+1]``. A channel without ground truth has AP 0.0.

PCK at d is matched ground truth / N_gt; the distance statistics are over the pairs matched at the
largest threshold. Matching runs in :mod:`kp_platform.metrics.matching` on the inputs' device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from kp_platform.errors import InputError
from kp_platform.metrics.matching import (
    as_rows,
    check_matching,
    descending_key,
    match_padded,
    pad_ragged,
)

# Detection (or keypoint) slots per matching chunk: large enough to amortise the per-rank loop's
# overhead, small enough that the working tensors (tens of MB) stay clear of the allocator's
# mmap path, whose page faults otherwise dominate on a CPU.
_CHUNK_SLOTS = 1 << 19


def threshold_key(threshold: float) -> str:
    """The metrics-JSON key of a threshold: ``2.0 -> "2"``, ``2.5 -> "2.5"``."""
    return format(float(threshold), "g")


def _check_setup(channel_names: Sequence[str], thresholds: Sequence[float]) -> None:
    """Validates channel names and thresholds.

    Raises:
        InputError: Empty, duplicate, negative or non-finite values.
    """
    if not channel_names:
        raise InputError("at least one channel name is required")
    if len(set(channel_names)) != len(channel_names):
        raise InputError(f"duplicate channel names: {list(channel_names)}")
    if not thresholds:
        raise InputError("at least one distance threshold is required")
    for t in thresholds:
        if not math.isfinite(float(t)) or float(t) < 0:
            raise InputError(f"thresholds must be finite and >= 0, got {t!r}")
    keys = [threshold_key(t) for t in thresholds]
    if len(set(keys)) != len(keys):
        raise InputError(f"duplicate thresholds: {list(thresholds)}")


def _distance_stats(distances: torch.Tensor) -> dict[str, float | None]:
    """Mean, p50 and p90 (numpy's default linear interpolation) of matched-pair distances.

    Args:
        distances: (M,) float64; M == 0 gives None for each statistic.
    """
    if distances.numel() == 0:
        return {"mean": None, "p50": None, "p90": None}
    # Sorted first: the sum (and so the mean) is then the same whatever order the pairs came in
    # (one process, or several whose states were gathered rank after rank).
    values = np.sort(distances.cpu().numpy())
    last = len(values) - 1
    spots = {q: (q / 100.0 * last, math.floor(q / 100.0 * last)) for q in (50.0, 90.0)}
    stats: dict[str, float | None] = {"mean": float(values.sum()) / len(values)}
    for q, (pos, lo) in spots.items():
        low = float(values[lo])
        stats[f"p{q:g}"] = low + (float(values[min(lo + 1, last)]) - low) * (pos - lo)
    return stats


def _channel_metrics(
    scores: torch.Tensor,
    tp: torch.Tensor,
    distances: torch.Tensor,
    num_gt: int,
    keys: torch.Tensor | None = None,
) -> tuple[list[float], list[float], dict[str, float | None]]:
    """AP and PCK per threshold and distance statistics of one channel.

    Args:
        scores: (N,) float64 scores of the channel's detections, in pooled (image) order.
        tp: (N, T) bool true-positive flags.
        distances: (M,) float64 distances of the pairs matched at the largest threshold.
        num_gt: N_gt of the channel.
        keys: Optional (N,) int64 image-order keys, when the pooled order may not follow them.

    Returns:
        ap: T floats; pck: T floats; the distance statistics (None without matched pairs).
    """
    num_thr = tp.shape[1]
    stats = _distance_stats(distances)
    if scores.numel() == 0 or num_gt == 0:
        # No detections, or nothing to detect (every detection is then a false positive).
        return [0.0] * num_thr, [0.0] * num_thr, stats
    recall, precision, matched = _pr_curve(scores, tp, num_gt, keys)
    ap = ((recall[:, 1:] - recall[:, :-1]) * precision[:, 1:]).sum(1)
    return ap.tolist(), [m / num_gt for m in matched.tolist()], stats


def _pr_curve(
    scores: torch.Tensor, tp: torch.Tensor, num_gt: int, keys: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The interpolated precision/recall curve of one channel, per threshold.

    Args:
        scores: (N,) float64 scores, N >= 1, in pooled (image) order.
        tp: (N, T) bool true-positive flags.
        num_gt: N_gt >= 1.
        keys: Optional (N,) int64 image-order keys, when the pooled order may not follow them.

    Returns:
        recall, precision: (T, N + 2) float64 with the end points (r 0, p 1) and (r 1, p 0);
        precision already non-increasing from the right. matched: (T,) true-positive counts.
    """
    num_thr = tp.shape[1]
    if keys is not None and scores.numel() > 1 and bool((keys[1:] < keys[:-1]).any()):
        # Images arrived out of id order (KeypointAP with image_ids): restore it first so that
        # the stable score sort breaks ties by image order.
        first = torch.argsort(keys, stable=True)
        scores, tp = scores[first], tp[first]
    order = torch.argsort(descending_key(scores), stable=True)
    # (T, N) so that the running sums run along contiguous memory; counts are exact in float64.
    cum_tp = torch.cumsum(tp.index_select(0, order).t().to(torch.float64), 1)
    rank = torch.arange(1, cum_tp.shape[1] + 1, dtype=torch.float64, device=cum_tp.device)
    precision = cum_tp / rank
    # Non-increasing from the right: a reverse cumulative max.
    precision = torch.flip(torch.cummax(torch.flip(precision, [1]), 1).values, [1])
    recall = cum_tp / num_gt
    ones = torch.ones(num_thr, 1, dtype=torch.float64, device=cum_tp.device)
    recall = torch.cat([torch.zeros_like(ones), recall, ones], 1)
    precision = torch.cat([ones, precision, torch.zeros_like(ones)], 1)
    return recall, precision, cum_tp[:, -1]


def _assemble(
    per_channel: list[tuple[list[float], list[float], dict[str, float | None]]],
    num_gt: Sequence[int],
    num_images: int,
    channel_names: Sequence[str],
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """The metrics-JSON dict from per-channel results."""
    keys = [threshold_key(t) for t in thresholds]
    ap = {name: dict(zip(keys, res[0], strict=True))
          for name, res in zip(channel_names, per_channel, strict=True)}
    mean_ap = {k: sum(ap[name][k] for name in channel_names) / len(channel_names) for k in keys}
    total = sum(ap[name][k] for name in channel_names for k in keys)
    return {
        "ap": ap,
        "mean_ap": mean_ap,
        "map": total / (len(channel_names) * len(keys)),
        "pck": {name: dict(zip(keys, res[1], strict=True))
                for name, res in zip(channel_names, per_channel, strict=True)},
        "distance_px": {name: res[2] for name, res in zip(channel_names, per_channel,
                                                          strict=True)},
        "num_gt": {name: int(n) for name, n in zip(channel_names, num_gt, strict=True)},
        "num_images": int(num_images),
    }


def metrics_from_pooled(
    scores: torch.Tensor,
    channels: torch.Tensor,
    image_keys: torch.Tensor,
    tp: torch.Tensor,
    match_distance: torch.Tensor,
    match_channel: torch.Tensor,
    num_gt: Sequence[int],
    num_images: int,
    channel_names: Sequence[str],
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """The metrics dict from pooled, classified detections.

    Args:
        scores: (N,) float64 scores of all valid detections, in insertion order.
        channels: (N,) int64 channel index per detection.
        image_keys: (N,) int64 image-order key per detection (ties go to the smaller key).
        tp: (N, T) bool/uint8 true-positive flags per threshold.
        match_distance: (M,) float64 distances of the pairs matched at the largest threshold.
        match_channel: (M,) int64 channel index per matched pair.
        num_gt: Ground-truth count per channel.
        num_images: Number of images seen.
        channel_names: C channel names.
        thresholds: T thresholds in pixels.

    Returns:
        ``{"ap", "mean_ap", "map", "pck", "distance_px", "num_gt", "num_images"}`` with plain
        Python numbers (the project's metrics JSON).
    """
    tp = tp.bool()
    per_channel = []
    for c in range(len(channel_names)):
        sel = (channels == c).nonzero().squeeze(1)
        dist_sel = (match_channel == c).nonzero().squeeze(1)
        per_channel.append(_channel_metrics(
            scores.index_select(0, sel), tp.index_select(0, sel),
            match_distance.index_select(0, dist_sel), int(num_gt[c]),
            keys=image_keys.index_select(0, sel),
        ))
    return _assemble(per_channel, num_gt, num_images, channel_names, thresholds)


class KeypointAP(Metric):
    """Stateful AP / PCK / distance metric for validation loops, synchronised across DDP ranks.

    Matching runs in :meth:`update` on the inputs' device; the state is the classified
    detections (``cat``) and the ground-truth counts (``sum``), so :meth:`compute` gives exactly
    what :func:`compute_keypoint_metrics` gives for the same images in the same order.

    Image order (which breaks exact score ties across images) is the order of the stored state:
    the update order in one process, rank after rank once synchronised across DDP ranks. To get
    the single-process result under DDP, pass ``image_ids`` (e.g. dataset indices) to every
    update; the pooled detections are then ordered by id first (stably).

    Args:
        channel_names: C channel names, in the tensors' channel order.
        thresholds: Distance thresholds in pixels.
        matching: "first" (the seed's semantics) or "nearest".
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    # All states are "cat"/"sum", so forward() and merge_state() may combine them directly.
    full_state_update = False

    def __init__(
        self,
        channel_names: Sequence[str],
        thresholds: Sequence[float],
        matching: str = "first",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_setup(channel_names, thresholds)
        self.channel_names = list(channel_names)
        self.thresholds = [float(t) for t in thresholds]
        self.matching = check_matching(matching)
        # A DDP rank that saw no batch contributes empty float32 tensors (torchmetrics), and
        # concatenating those promotes int64 to float32; so image keys are kept as float64
        # (exact below 2**53) and compute() casts every state back.
        for name in ("scores", "channels", "image_keys", "tp", "match_distance", "match_channel"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        num_channels = len(self.channel_names)
        self.add_state("num_gt", torch.zeros(num_channels, dtype=torch.int64), "sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.int64), "sum")

    def update(
        self,
        det_xy: torch.Tensor,
        det_scores: torch.Tensor,
        det_valid: torch.Tensor,
        gt_xy: torch.Tensor,
        gt_valid: torch.Tensor,
        image_ids: torch.Tensor | None = None,
    ) -> None:
        """Matches one batch and stores the outcome.

        Args:
            det_xy: (B, C, D, 2) float detection coordinates in original-image pixels.
            det_scores: (B, C, D) float finite scores.
            det_valid: (B, C, D) bool, False for padding.
            gt_xy: (B, C, G, 2) float ground-truth coordinates in original-image pixels.
            gt_valid: (B, C, G) bool, False for padding.
            image_ids: Optional (B,) int image-order keys (give them on every update or on
                none); without them images keep their update order.

        Raises:
            InputError: Inconsistent shapes or a channel count that is not C.
        """
        batch, channels, num_det = det_scores.shape
        if channels != len(self.channel_names):
            raise InputError(f"expected {len(self.channel_names)} channels, got {channels}")
        if det_xy.shape != (batch, channels, num_det, 2) or det_valid.shape != det_scores.shape:
            raise InputError(f"detection shapes disagree: {tuple(det_xy.shape)}, "
                             f"{tuple(det_scores.shape)}, {tuple(det_valid.shape)}")
        if (gt_xy.shape[:2] != (batch, channels) or gt_xy.shape[3:] != (2,)
                or gt_valid.shape != gt_xy.shape[:3]):
            raise InputError(f"ground-truth shapes disagree: {tuple(gt_xy.shape)}, "
                             f"{tuple(gt_valid.shape)}")
        device = det_scores.device
        res = match_padded(det_xy, det_scores, det_valid, gt_xy, gt_valid, self.thresholds,
                           self.matching)
        if image_ids is None:
            keys = torch.zeros(batch, dtype=torch.float64, device=device)
        else:
            keys = image_ids.to(device=device, dtype=torch.float64).reshape(batch)
        shape = (batch, channels, num_det)
        chan = torch.arange(channels, device=device).view(1, -1, 1).expand(shape)
        valid = res.valid
        self.scores.append(res.scores[valid])
        self.channels.append(chan[valid])
        self.image_keys.append(keys.view(-1, 1, 1).expand(shape)[valid])
        # Flattened (N * T,) uint8: gathers on every DDP backend.
        self.tp.append(res.tp[valid].to(torch.uint8).flatten())
        matched = ~torch.isnan(res.distance)
        self.match_distance.append(res.distance[matched])
        self.match_channel.append(chan[matched])
        self.num_gt += gt_valid.bool().sum(dim=(0, 2)).to(self.num_gt.device)
        self.num_images += batch

    def _cat(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """A ``cat`` state as one 1-D tensor of ``dtype`` (a list before sync, a tensor after)."""
        value = getattr(self, name)
        if isinstance(value, list):
            value = dim_zero_cat(value) if value else torch.zeros(0, device=self.device)
        return value.to(dtype)

    def compute(self) -> dict[str, Any]:
        """The metrics dict (see :func:`metrics_from_pooled`), plain Python numbers."""
        f64, i64 = torch.float64, torch.int64
        return metrics_from_pooled(
            scores=self._cat("scores", f64),
            channels=self._cat("channels", i64),
            image_keys=self._cat("image_keys", i64),
            tp=self._cat("tp", torch.bool).view(-1, len(self.thresholds)),
            match_distance=self._cat("match_distance", f64),
            match_channel=self._cat("match_channel", i64),
            num_gt=self.num_gt.tolist(),
            num_images=int(self.num_images),
            channel_names=self.channel_names,
            thresholds=self.thresholds,
        )

    def curves(self) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """The interpolated precision/recall curves behind the AP, for plots.

        Returns:
            channel → threshold key → (recall, precision) float64 arrays including the end
            points; channels without detections or ground truth are left out.
        """
        scores, channels = self._cat("scores", torch.float64), self._cat("channels", torch.int64)
        keys = self._cat("image_keys", torch.int64)
        tp = self._cat("tp", torch.bool).view(-1, len(self.thresholds))
        result: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for c, name in enumerate(self.channel_names):
            sel = (channels == c).nonzero().squeeze(1)
            num_gt = int(self.num_gt[c])
            if sel.numel() == 0 or num_gt == 0:
                continue
            recall, precision, _ = _pr_curve(scores[sel], tp[sel], num_gt, keys[sel])
            result[name] = {
                threshold_key(t): (recall[i].cpu().numpy(), precision[i].cpu().numpy())
                for i, t in enumerate(self.thresholds)
            }
        return result


def compute_keypoint_metrics(
    detections: Sequence[Sequence[Any]],
    ground_truth: Sequence[Sequence[Any]],
    channel_names: Sequence[str],
    thresholds: Sequence[float],
    matching: str = "first",
    *,
    device: str | torch.device | None = None,
    chunk_images: int | None = None,
) -> dict[str, Any]:
    """All keypoint metrics in one call.

    Args:
        detections: ``detections[i][c]``: (n, 3) array of (x, y, score), image i, channel c.
        ground_truth: ``ground_truth[i][c]``: (m, 2) array of (x, y).
        channel_names: C channel names.
        thresholds: Distance thresholds in pixels.
        matching: "first" (the seed's semantics) or "nearest".
        device: Where to match (default CPU).
        chunk_images: Images matched per step (default: sized from the workload).

    Returns:
        The metrics dict (see :func:`metrics_from_pooled`).

    Raises:
        InputError: Mismatched lengths, bad array shapes, non-finite values or a bad setup.
    """
    _check_setup(channel_names, thresholds)
    check_matching(matching)
    if len(detections) != len(ground_truth):
        raise InputError(f"{len(detections)} detection images but {len(ground_truth)} "
                         "ground-truth images")
    num_ch = len(channel_names)
    dets: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    for i, (image_dets, image_gts) in enumerate(zip(detections, ground_truth, strict=True)):
        if len(image_dets) != num_ch or len(image_gts) != num_ch:
            raise InputError(f"expected {num_ch} channels", f"image {i}")
        dets.extend(as_rows(d, 3, f"detections of image {i}") for d in image_dets)
        gts.extend(as_rows(g, 2, f"ground truth of image {i}") for g in image_gts)
    device = torch.device(device or "cpu")
    num_images = len(detections)
    if chunk_images is None:
        widest = max([len(a) for a in dets] + [len(a) for a in gts] + [1])
        chunk_images = max(1, _CHUNK_SLOTS // (num_ch * widest))
    if chunk_images < 1:
        raise InputError(f"chunk_images must be >= 1, got {chunk_images}")

    # Per channel, in image order: scores, TP flags and matched distances.
    pooled: list[tuple[list[torch.Tensor], ...]] = [([], [], []) for _ in range(num_ch)]
    for start in range(0, num_images, chunk_images):
        stop = min(start + chunk_images, num_images)
        batch = stop - start
        det_pad, det_valid = pad_ragged(dets[start * num_ch:stop * num_ch], 3)
        gt_pad, gt_valid = pad_ragged(gts[start * num_ch:stop * num_ch], 2)
        # Padding is 0.0, so only real values can fail these.
        if not (np.isfinite(det_pad).all() and np.isfinite(gt_pad).all()):
            raise InputError("detections and ground truth must be finite")
        det_t = torch.from_numpy(det_pad).to(device).view(batch, num_ch, -1, 3)
        res = match_padded(
            det_t[..., :2], det_t[..., 2],
            torch.from_numpy(det_valid).to(device).view(batch, num_ch, -1),
            torch.from_numpy(gt_pad).to(device).view(batch, num_ch, -1, 2),
            torch.from_numpy(gt_valid).to(device).view(batch, num_ch, -1),
            thresholds, matching,
        )
        for c in range(num_ch):
            valid = res.valid[:, c].flatten().nonzero().squeeze(1)
            dist = res.distance[:, c].flatten()
            pooled[c][0].append(res.scores[:, c].flatten().index_select(0, valid))
            pooled[c][1].append(res.tp[:, c].flatten(0, 1).index_select(0, valid))
            pooled[c][2].append(dist[~torch.isnan(dist)])
    num_gt = [0] * num_ch
    for j, g in enumerate(gts):
        num_gt[j % num_ch] += len(g)
    per_channel = []
    for c in range(num_ch):
        if num_images:
            scores, tp, dists = (torch.cat(part) for part in pooled[c])
        else:
            scores = dists = torch.zeros(0, dtype=torch.float64)
            tp = torch.zeros(0, len(thresholds), dtype=torch.bool)
        per_channel.append(_channel_metrics(scores, tp, dists, num_gt[c]))
    return _assemble(per_channel, num_gt, num_images, channel_names, thresholds)
