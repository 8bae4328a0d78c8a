"""Vectorised greedy detection-to-ground-truth matching on padded tensors.

The seed's matching is greedy: per image and channel, detections in descending score order
each take the first (or, with ``matching="nearest"``, the nearest) ground-truth keypoint that is
still free and within ``d + 1e-5`` pixels. A detection's outcome depends on which keypoints the
higher-scored ones took, so the walk over detection *ranks* is inherently sequential; everything
else (images, channels, thresholds, ground-truth keypoints) is batched, so one loop step handles
the r-th detection of every image, channel and threshold at once. Runs on the inputs' device.

Before the loop, each detection's candidate keypoints (those within the largest threshold) are
found with a sort-and-search sweep along x, so the loop touches K candidates (a handful on real
data) rather than all G keypoints. ``as_rows`` and ``pad_ragged`` pack per-image arrays into the
padded layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kp_platform.errors import InputError

# The seed's tolerance: a detection exactly on the threshold circle still matches.
MATCH_EPS = 1e-5
MATCHING_MODES = ("first", "nearest")


@dataclass(frozen=True)
class MatchResult:
    """Per-detection outcome of :func:`match_padded`, in each image's score order.

    Attributes:
        scores: (B, C, D) float64 scores, sorted descending (stably) per image and channel,
            padding last.
        valid: (B, C, D) bool, False for padding.
        tp: (B, C, D, T) bool, True where the detection matched at threshold t.
        distance: (B, C, D) float64 distance to the matched keypoint at the largest threshold,
            NaN where unmatched there.
    """

    scores: torch.Tensor
    valid: torch.Tensor
    tp: torch.Tensor
    distance: torch.Tensor


def check_matching(matching: str) -> str:
    """Validates the matching mode name.

    Raises:
        InputError: Unknown mode.
    """
    if matching not in MATCHING_MODES:
        raise InputError(f"unknown matching {matching!r}; expected one of {MATCHING_MODES}")
    return matching


def descending_key(scores: torch.Tensor) -> torch.Tensor:
    """An int64 key whose ascending order is the scores' descending order, ties kept equal.

    Integer keys sort markedly faster than float64 on a CPU, and leave room above every score
    for a padding sentinel.

    Args:
        scores: (...) float scores, no NaN.

    Returns:
        (...) int64 keys, all below ``torch.iinfo(torch.int64).max``.
    """
    # +0.0 folds -0.0 into +0.0, which compare equal as floats and must tie here too.
    bits = (scores.to(torch.float64) + 0.0).view(torch.int64)
    # IEEE doubles order like sign-magnitude integers: flip the magnitude bits of negatives.
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFFFFFFFFFF, bits)
    return ~ordered  # bitwise not reverses the order without overflow


def sort_detections(
    scores: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable descending score order per row, padding moved last.

    Args:
        scores: (..., D) scores.
        valid: (..., D) bool.

    Returns:
        order: (..., D) int64 indices into the last dimension.
        sorted_valid: (..., D) bool, valid gathered in that order.
    """
    # Even a valid -inf score keys below the sentinel, so padding always sorts last.
    key = torch.where(valid, descending_key(scores), torch.iinfo(torch.int64).max)
    order = torch.argsort(key, dim=-1, stable=True)
    return order, valid.gather(-1, order)


# Candidate pairs handled at once: bounds memory when keypoints crowd into the same x range.
_PAIR_BLOCK = 1 << 20
# Up to this many candidates per detection, a chain of elementwise minimums beats torch's
# reduction kernels, which are slow over a short last dimension.
_UNROLL_MIN = 8


def _candidates(
    xy: torch.Tensor,
    valid: torch.Tensor,
    gt_xy: torch.Tensor,
    gt_valid: torch.Tensor,
    reach: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The keypoints each detection may reach at the largest threshold (in no particular order).

    Keypoints are sorted by x per row; a binary search gives each detection the run of keypoints
    with x in ``[x - reach, x + reach]`` (slightly widened, so that no pair the exact test accepts
    is lost to rounding), and only those pairs get a distance. Pairs whose squared distance is
    clearly beyond reach are dropped; the few kept just beyond it fail every threshold later.

    Args:
        xy: (N, R, 2) float64 detections, N = B * C rows of R ranks.
        valid: (N, R) bool.
        gt_xy: (N, G, 2) float64 keypoints.
        gt_valid: (N, G) bool.
        reach: The largest threshold plus the tolerance.

    Returns:
        index: (R, N, K) int64 keypoint indices, rank-major; empty slots hold G.
        distance: (R, N, K) float64 distances, computed exactly like the oracle's; empty slots
            hold +inf.
    """
    rows, ranks, _ = xy.shape
    num_gt = gt_xy.shape[1]
    device = xy.device
    gx_sorted, perm = torch.sort(torch.where(gt_valid, gt_xy[..., 0], torch.inf), dim=-1)
    x = xy[..., 0]
    # The window is widened by a relative 1e-9 (far above the few ulps by which a distance
    # computed in float64 can undercut the exact one) plus 1e-12 of the largest coordinate
    # (far above the rounding of x -/+ margin).
    finite = valid & torch.isfinite(x)  # a non-finite x matches nothing either way
    biggest = float(torch.where(finite, x.abs(), 0).amax()) if x.numel() else 0.0
    margin = reach * (1.0 + 1e-9) + biggest * 1e-12
    lo = torch.searchsorted(gx_sorted, x - margin)
    hi = torch.searchsorted(gx_sorted, x + margin, right=True)
    counts = torch.where(valid, (hi - lo).clamp_min(0), 0).flatten()  # pairs per detection
    # Flat position, in the row-major x-sorted keypoints, where each detection's run starts.
    first = (lo + torch.arange(rows, device=device).unsqueeze(1) * num_gt).flatten()
    gt_sorted = gt_xy.gather(1, perm.unsqueeze(-1).expand(-1, -1, 2)).reshape(-1, 2)
    det_xy = xy.reshape(-1, 2)
    perm = perm.flatten()
    reach_sq = reach * reach * (1.0 + 1e-9)

    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    found_det, found_g, found_sq = [], [], []
    det_start = 0
    while det_start < rows * ranks and total:
        # Detections [det_start, det_stop) hold at most _PAIR_BLOCK pairs (at least one det).
        done = int(ends[det_start - 1]) if det_start else 0
        det_stop = int(torch.searchsorted(ends, done + _PAIR_BLOCK, right=True))
        det_stop = min(max(det_stop, det_start + 1), rows * ranks)
        block = counts[det_start:det_stop]
        det = torch.repeat_interleave(block) + det_start
        offset = first[det_start:det_stop] - (torch.cumsum(block, 0) - block)
        pos = offset.index_select(0, det - det_start) + torch.arange(det.numel(), device=device)
        diff = det_xy.index_select(0, det) - gt_sorted.index_select(0, pos)
        diff *= diff
        square = diff[:, 0] + diff[:, 1]
        keep = (square <= reach_sq).nonzero().squeeze(1)
        found_det.append(det.index_select(0, keep))
        found_g.append(perm.index_select(0, pos.index_select(0, keep)))
        found_sq.append(square.index_select(0, keep))
        det_start = det_stop
    det = torch.cat(found_det) if found_det else torch.zeros(0, dtype=torch.int64, device=device)
    kept = torch.bincount(det, minlength=rows * ranks)
    width = int(kept.max()) if det.numel() else 0
    index = torch.full((ranks * rows * width,), num_gt, dtype=torch.int64, device=device)
    distance = torch.full(index.shape, torch.inf, dtype=torch.float64, device=device)
    if width:
        # det ascends, so a detection's pairs are contiguous and slot counts up within them.
        slot = torch.arange(det.numel(), device=device)
        slot -= (torch.cumsum(kept, 0) - kept).index_select(0, det)
        n, r = det.div(ranks, rounding_mode="floor"), det.remainder(ranks)
        flat = (r * rows + n) * width + slot
        index[flat] = torch.cat(found_g)
        # sqrt(dx * dx + dy * dy), the oracle's expression, only for the pairs kept.
        distance[flat] = torch.sqrt(torch.cat(found_sq))
    return index.view(ranks, rows, width), distance.view(ranks, rows, width)


def _distance(xy: torch.Tensor, gt_xy: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Distances from detections to the indexed keypoints, as the oracle computes them.

    Args:
        xy: (N, R, 2) float64 detections.
        gt_xy: (N, G', 2) float64 keypoints.
        index: (N, R) int64 indices into G'.

    Returns:
        (N, R) float64 ``sqrt(dx * dx + dy * dy)``.
    """
    dx = xy[..., 0] - gt_xy[..., 0].gather(1, index)
    dy = xy[..., 1] - gt_xy[..., 1].gather(1, index)
    return torch.sqrt(dx * dx + dy * dy)


def _min_last(values: torch.Tensor) -> torch.Tensor:
    """Minimum over the last dimension, keepdim (see _UNROLL_MIN)."""
    if values.shape[-1] > _UNROLL_MIN:
        return values.min(-1, keepdim=True).values
    best = values[..., 0:1]
    for k in range(1, values.shape[-1]):
        best = torch.minimum(best, values[..., k:k + 1])
    return best


def match_padded(
    det_xy: torch.Tensor,
    det_scores: torch.Tensor,
    det_valid: torch.Tensor,
    gt_xy: torch.Tensor,
    gt_valid: torch.Tensor,
    thresholds: Sequence[float],
    matching: str = "first",
) -> MatchResult:
    """Greedy matching of every image, channel and threshold at once.

    Args:
        det_xy: (B, C, D, 2) detection coordinates in pixels.
        det_scores: (B, C, D) detection scores (finite).
        det_valid: (B, C, D) bool, False for padding.
        gt_xy: (B, C, G, 2) ground-truth coordinates in pixels.
        gt_valid: (B, C, G) bool, False for padding.
        thresholds: T distance thresholds in pixels.
        matching: "first" (the seed's: first free keypoint in list order) or "nearest".

    Returns:
        The per-detection outcome, see :class:`MatchResult`.
    """
    check_matching(matching)
    device = det_xy.device
    f64 = torch.float64
    batch, channels, num_det = det_scores.shape
    num_gt = gt_xy.shape[2]
    num_thr = len(thresholds)
    # Float64 so that distances and the `<= d + eps` tests agree bit-for-bit with a Python loop.
    limits = torch.tensor([float(t) + MATCH_EPS for t in thresholds], dtype=f64, device=device)
    largest = max(range(num_thr), key=lambda i: float(thresholds[i]))

    order, valid = sort_detections(det_scores, det_valid.bool())
    scores = det_scores.to(f64).gather(-1, order)
    tp = torch.zeros(batch, channels, num_det, num_thr, dtype=torch.bool, device=device)
    distance = torch.full((batch, channels, num_det), float("nan"), dtype=f64, device=device)
    steps = int(valid.sum(-1).max()) if valid.numel() and num_gt else 0
    if steps == 0:  # no detections or no keypoints: everything is a false positive
        return MatchResult(scores=scores, valid=valid, tp=tp, distance=distance)

    rows = batch * channels
    xy = det_xy.to(f64).gather(2, order[:, :, :steps, None].expand(-1, -1, -1, 2))
    xy = xy.reshape(rows, steps, 2)
    gt = gt_xy.to(f64).reshape(rows, num_gt, 2)
    cand_idx, cand_dist = _candidates(xy, valid[:, :, :steps].reshape(rows, steps), gt,
                                      gt_valid.bool().reshape(rows, num_gt),
                                      float(limits[largest]))
    width = cand_idx.shape[-1]
    if width == 0:  # no detection reaches any keypoint
        return MatchResult(scores=scores, valid=valid, tp=tp, distance=distance)
    # A sink keypoint G: empty candidate slots point at it and it is never free.
    gt = torch.cat([gt, torch.zeros(rows, 1, 2, dtype=f64, device=device)], 1)
    # within[r, t, n, k]: detection r of row n reaches its k-th candidate at threshold t.
    # Thresholds lead so that the (N, K) candidate indices broadcast over them cheaply.
    within = cand_dist.unsqueeze(1) <= limits.view(1, -1, 1, 1)
    # free[t, n, g], flattened: keypoint g of row n not yet taken at threshold t.
    stride = num_gt + 1
    free = torch.ones(num_thr, rows, stride, dtype=torch.bool, device=device)
    free[..., num_gt] = False
    free = free.view(-1)
    row_base = (torch.arange(rows, device=device) * stride).view(rows, 1)
    thr_base = (torch.arange(num_thr, device=device) * rows * stride).view(num_thr, 1, 1)
    out_base = thr_base.view(num_thr, 1) + row_base.view(1, rows)
    taken = []
    for r in range(steps):
        idx = cand_idx[r]  # (N, K)
        cand = within[r] & free.index_select(0, (thr_base + (row_base + idx)).view(-1)).view(
            num_thr, rows, width)
        if matching == "nearest":
            # Only the nearest candidates stay; the list-order rule below breaks their ties.
            masked = cand_dist[r].masked_fill(~cand, torch.inf)
            cand &= masked == _min_last(masked)
        # The smallest keypoint index among the candidates is the first free one in list order.
        g = _min_last(torch.where(cand, idx, num_gt)).squeeze(-1)  # (T, N); G: no match
        free.index_fill_(0, (out_base + g).view(-1), False)
        taken.append(g)
    chosen = torch.stack(taken, 2)  # (T, N, R)
    hit = chosen < num_gt
    tp[:, :, :steps] = hit.permute(1, 2, 0).reshape(batch, channels, steps, num_thr)
    far = _distance(xy, gt, chosen[largest])  # (N, R), recomputed exactly like the oracle
    far = torch.where(hit[largest], far, torch.nan)
    distance[:, :, :steps] = far.view(batch, channels, steps)
    return MatchResult(scores=scores, valid=valid, tp=tp, distance=distance)


def as_rows(array: Any, width: int, where: str) -> np.ndarray:
    """An (n, width) float64 array from an array-like; an empty input gives (0, width)."""
    rows = np.asarray(array, dtype=np.float64)
    if rows.size == 0:
        return rows.reshape(0, width)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise InputError(f"expected an (n, {width}) array, got shape {rows.shape}", where)
    return rows


def pad_ragged(rows: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads K ragged (n_k, width) arrays into (K, max n, width) plus a (K, max n) mask."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    longest = int(lengths.max()) if len(rows) else 0
    if len(rows) and lengths.min() == longest:  # common: a fixed number per image (top-k)
        return np.stack(rows), np.ones((len(rows), longest), dtype=bool)
    padded = np.zeros((len(rows), longest, width), dtype=np.float64)
    valid = np.arange(longest) < lengths[:, None]
    if longest:
        # Boolean-mask assignment fills row-major, i.e. in concatenation order.
        padded[valid] = np.concatenate(rows)
    return padded, valid
