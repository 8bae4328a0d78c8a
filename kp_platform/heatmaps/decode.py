"""Heatmap decoding: batched max-pool NMS, plateau handling, top-k and sub-pixel refinement.

Everything runs on the heatmaps' device over all images and channels at once. A pixel is a peak
when it is above ``score_threshold`` and equals the max of its (2r+1)² window (r = nms_radius;
cells outside the map count as -inf, so border and corner peaks are found).

Finding peaks: pixels above the threshold are usually a few percent of the map, so candidates are
culled by 32-cell segments (one cheap amax pass), filtered by their 4 direct neighbours, and only
the survivors' windows are gathered; when candidates are dense (over a quarter of all cells) a
max-pool over the whole batch does the same job. Both give identical peaks.

Plateaus: two peaks within r of each other are necessarily equal (each is in the other's
window). Such ties are grouped (chains of peaks within r, by label propagation with max-pool, only
on the maps that have ties) and each group yields one detection at its first pixel in raster
order; along an axis where the group spans more than one cell its location is the group's
centroid (a saturated 3x3 plateau decodes to its centre).

Refinement: a parabola through the log-values of the 3 cells around the peak along each axis;
log-space makes it exact for a Gaussian. At the border the 3 cells are shifted inwards (still
exact for a Gaussian, so a keypoint at x=0.2 decodes to 0.2); flat or convex neighbours fall back
to the pixel centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Bounds the (candidates, window) gathers: 16M elements per chunk.
_MAX_TEMP_ELEMENTS = 1 << 24
# Sparse window gathers win while candidates are below this fraction of all pixels.
_SPARSE_MAX_FRACTION = 1 / 4
# log() clamp: keeps log-space refinement finite on zero neighbours.
_LOG_FLOOR = 1e-30


@dataclass(frozen=True)
class Detections:
    """Padded per-channel detections, sorted by score (descending) within each channel.

    Attributes:
        xy: (B, C, D, 2) float32 (x, y) in input pixels (0 where not valid).
        scores: (B, C, D) float32 heatmap values at the peaks (0 where not valid).
        valid: (B, C, D) bool; the valid entries of a channel are a prefix of its D slots.
    """

    xy: Tensor
    scores: Tensor
    valid: Tensor

    def to_original(self, affine: Tensor | np.ndarray) -> Detections:
        """Maps xy back through each image's forward transform to original-image pixels.

        Args:
            affine: (B, 4) per image (sx, sy, tx, ty) of ``x_in = sx * x_orig + tx``,
                ``y_in = sy * y_orig + ty`` (``Affine.as_array()`` rows).

        Returns:
            A new Detections with ``x_orig = (x_in - tx) / sx``, ``y_orig = (y_in - ty) / sy``.
        """
        a = torch.as_tensor(affine, device=self.xy.device, dtype=torch.float64)
        if a.shape != (self.xy.shape[0], 4):
            raise ValueError(f"affine must be ({self.xy.shape[0]}, 4), got {tuple(a.shape)}")
        scale, shift = a[:, None, None, :2], a[:, None, None, 2:]
        xy = ((self.xy.to(torch.float64) - shift) / scale).to(self.xy.dtype)
        xy = torch.where(self.valid[..., None], xy, torch.zeros_like(xy))
        return Detections(xy=xy, scores=self.scores, valid=self.valid)

    def to_lists(self) -> list[list[np.ndarray]]:
        """Per image, per channel: an (n, 3) float64 array of (x, y, score), best first."""
        xy = self.xy.detach().cpu().to(torch.float64).numpy()
        scores = self.scores.detach().cpu().to(torch.float64).numpy()
        counts = self.valid.sum(dim=-1).cpu().numpy()
        table = np.concatenate([xy, scores[..., None]], axis=-1)  # (B, C, D, 3)
        return [[table[b, c, : counts[b, c]] for c in range(table.shape[1])]
                for b in range(table.shape[0])]


def decode_heatmaps(
    heatmaps: Tensor,
    nms_radius: int = 2,
    score_threshold: float = 0.1,
    top_k: int | None = 20,
    stride: int = 1,
    refine: bool = True,
) -> Detections:
    """Finds the peaks of every channel of every image, batched on the heatmaps' device.

    Args:
        heatmaps: (B, C, H, W) floating, probabilities in [0, 1].
        nms_radius: r; a peak suppresses everything within r cells (Chebyshev distance).
        score_threshold: Peaks must be strictly above it.
        top_k: Detections kept per channel (best first); None or 0: all.
        stride: Output stride; coordinates are mapped back with x = x_h * stride + (stride-1)/2.
        refine: Sub-pixel refinement (log-parabola per axis, plateau centroids); False returns
            cell centres (a plateau's first cell in raster order).

    Returns:
        Detections with D = top_k when it is set, else the largest per-channel count.
    """
    if heatmaps.ndim != 4 or not heatmaps.is_floating_point():
        raise ValueError(f"heatmaps must be floating (B, C, H, W), got {heatmaps.dtype} "
                         f"{tuple(heatmaps.shape)}")
    if nms_radius < 0 or stride < 1 or (top_k is not None and top_k < 0):
        raise ValueError(f"need nms_radius >= 0, stride >= 1, top_k >= 0, got {nms_radius}, "
                         f"{stride}, {top_k}")
    batch, channels, height, width = heatmaps.shape
    maps = heatmaps.detach().reshape(batch * channels, height, width).contiguous()
    flat = maps.view(-1)
    per_map = height * width

    peaks, tie = _find_peaks(maps, int(nms_radius), float(score_threshold))
    centroid = torch.full((peaks.numel(), 2), float("nan"), device=flat.device)
    if bool(tie.any()):
        # Only maps with ties pay for grouping; their peaks are replaced by one root per group.
        tie_maps = torch.unique(peaks[tie] // per_map)
        other = ~torch.isin(peaks // per_map, tie_maps)
        roots, root_centroid = _group_plateaus(maps, tie_maps, int(nms_radius),
                                               float(score_threshold))
        peaks = torch.cat([peaks[other], roots])
        centroid = torch.cat([centroid[other], root_centroid])

    # Best first within each map; equal scores in raster order (stable sorts on a raster order).
    order = torch.argsort(peaks, stable=True)
    scores = flat.index_select(0, peaks[order])
    order = order[torch.argsort(scores, descending=True, stable=True)]
    order = order[torch.argsort(peaks[order] // per_map, stable=True)]
    peaks, centroid = peaks[order], centroid[order]
    map_id = peaks // per_map
    counts = torch.bincount(map_id, minlength=batch * channels)
    slots = top_k if top_k else int(counts.max()) if counts.numel() else 0
    rank = torch.arange(peaks.numel(), device=flat.device) - (counts.cumsum(0) - counts)[map_id]
    keep = rank < slots
    peaks, centroid, map_id, rank = peaks[keep], centroid[keep], map_id[keep], rank[keep]

    pix = peaks % per_map
    y, x = pix // width, pix % width
    xy = torch.stack([x, y], dim=1).to(torch.float32)
    if refine:
        xy[:, 0] = _refine_axis(flat, peaks, x, width, 1)
        xy[:, 1] = _refine_axis(flat, peaks, y, height, width)
        xy = torch.where(torch.isnan(centroid), xy, centroid)
    xy = xy * stride + (stride - 1) / 2

    slot = map_id * slots + rank
    out_xy = torch.zeros(batch * channels * slots, 2, device=flat.device)
    out_scores = torch.zeros(batch * channels * slots, device=flat.device)
    out_valid = torch.zeros(batch * channels * slots, dtype=torch.bool, device=flat.device)
    out_xy[slot] = xy
    out_scores[slot] = flat.index_select(0, peaks).to(torch.float32)
    out_valid[slot] = True
    return Detections(xy=out_xy.view(batch, channels, slots, 2),
                      scores=out_scores.view(batch, channels, slots),
                      valid=out_valid.view(batch, channels, slots))


def _find_peaks(maps: Tensor, radius: int, threshold: float) -> tuple[Tensor, Tensor]:
    """Local maxima above the threshold.

    Args:
        maps: (M, H, W) contiguous.

    Returns:
        peaks: (P,) int64 flat indices into maps, ascending.
        tie: (P,) bool, True where another cell of the peak's window has the same value.
    """
    _, height, width = maps.shape
    flat = maps.view(-1)
    cand = _above(flat, threshold)
    if cand.numel() > _SPARSE_MAX_FRACTION * flat.numel():
        pooled = _max_pool(maps, radius)
        peaks = ((maps == pooled) & (maps > threshold)).view(-1).nonzero().squeeze(1)
        return peaks, flat.index_select(0, peaks) == _window_max(flat, peaks, height, width,
                                                                  radius)
    if radius > 0:
        # Cheap necessary condition first: >= the 4 direct neighbours. It leaves ~1 candidate
        # per local maximum, so the full (2r+1)² gather below stays small.
        cross = _window_max(flat, cand, height, width, 1, cross=True)
        cand = cand[flat.index_select(0, cand) >= cross]
    neighbour_max = _window_max(flat, cand, height, width, radius)
    value = flat.index_select(0, cand)
    is_peak = value >= neighbour_max
    return cand[is_peak], (value == neighbour_max)[is_peak]


def _above(flat: Tensor, threshold: float) -> Tensor:
    """(N,) int64 ascending flat indices of the cells above the threshold.

    One amax pass over 32-cell segments first: most segments of a heatmap are background, and
    only the segments that hold a candidate are compared cell by cell.
    """
    segment = next((g for g in (32, 16, 8) if flat.numel() % g == 0), 1)
    if segment == 1:
        return (flat > threshold).nonzero().squeeze(1)
    segments = flat.view(-1, segment)
    hot = (segments.amax(dim=1) > threshold).nonzero().squeeze(1)
    hits = (segments.index_select(0, hot) > threshold).nonzero()
    return hot.index_select(0, hits[:, 0]) * segment + hits[:, 1]


def _max_pool(maps: Tensor, radius: int) -> Tensor:
    """(M, H, W) → (M, H, W) max over each (2r+1)² window; max_pool2d pads with -inf."""
    size = 2 * radius + 1
    return F.max_pool2d(maps[:, None], size, stride=1, padding=radius)[:, 0]


def _window_max(
    flat: Tensor, index: Tensor, height: int, width: int, radius: int, cross: bool = False
) -> Tensor:
    """Max over each indexed cell's (2r+1)² window without the cell itself (-inf off the map).

    Args:
        flat: (M*H*W,) map values.
        index: (P,) int64 flat indices.
        cross: Only the 4 direct neighbours (with radius 1).

    Returns:
        (P,) neighbour maxima, in chunks bounding the (chunk, window) gathers.
    """
    span = torch.arange(-radius, radius + 1, device=flat.device)
    dy, dx = (d.reshape(-1) for d in torch.meshgrid(span, span, indexing="ij"))
    off_centre = (dy != 0) | (dx != 0)
    if cross:
        off_centre &= (dy == 0) | (dx == 0)
    # (window, P) layout: the long axis innermost keeps the broadcast arithmetic vectorised.
    dy, dx = dy[off_centre, None], dx[off_centre, None]
    out = torch.full(index.shape, float("-inf"), dtype=flat.dtype, device=flat.device)
    if dy.numel() == 0:
        return out
    chunk = max(1, _MAX_TEMP_ELEMENTS // dy.numel())
    for p0 in range(0, index.numel(), chunk):
        idx = index[None, p0:p0 + chunk]
        pix = idx % (height * width)
        yy, xx = pix // width + dy, pix % width + dx
        inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        gather = torch.where(inside, idx + (dy * width + dx), idx)
        values = flat.index_select(0, gather.view(-1)).view(gather.shape)
        values = values.masked_fill_(~inside, float("-inf"))
        out[p0:p0 + chunk] = values.amax(dim=0)
    return out


def _group_plateaus(
    maps: Tensor, tie_maps: Tensor, radius: int, threshold: float
) -> tuple[Tensor, Tensor]:
    """One root per group of tied peaks (chains of peaks within r), on the maps with ties.

    Every peak's label starts as minus its raster index; repeated max-pools over the peak cells
    spread the group's smallest index, so a peak is a root when its label is still its own.

    Args:
        maps: (M, H, W).
        tie_maps: (S,) int64 indices of the maps holding ties.

    Returns:
        roots: (R,) int64 flat indices into maps (every peak of those maps that is a root).
        centroid: (R, 2) float32 (x, y) group centroid per axis where the group spans more
            than one cell, NaN where it spans one (that axis is refined at the root instead).
    """
    _, height, width = maps.shape
    per_map = height * width
    sub = maps.index_select(0, tie_maps)
    is_peak = (sub == _max_pool(sub, radius)) & (sub > threshold)
    # float32 holds every index exactly up to 2**24 cells per map.
    dtype = torch.float32 if per_map <= 1 << 24 else torch.float64
    own = -torch.arange(per_map, device=maps.device, dtype=dtype).view(1, height, width)
    none = torch.full((), float("-inf"), device=maps.device, dtype=dtype)
    label = torch.where(is_peak, own, none)
    for _ in range(per_map):
        spread = torch.where(is_peak, _max_pool(label, radius), none)
        if torch.equal(spread, label):
            break
        label = spread

    members = is_peak.view(-1).nonzero().squeeze(1)  # flat into sub
    group = (members // per_map) * per_map + (-label.view(-1)[members]).long()
    pix = members % per_map
    coords = torch.stack([pix % width, pix // width], dim=1).to(torch.float32)
    size = sub.numel()
    count = torch.zeros(size, device=maps.device).index_add_(
        0, group, torch.ones_like(coords[:, 0]))
    total = torch.zeros(size, 2, device=maps.device).index_add_(0, group, coords)
    group2 = group[:, None].expand(-1, 2)
    lo = torch.full((size, 2), float("inf"), device=maps.device).scatter_reduce_(
        0, group2, coords, "amin")
    hi = torch.full((size, 2), float("-inf"), device=maps.device).scatter_reduce_(
        0, group2, coords, "amax")

    roots = members[group == members]
    centroid = total[roots] / count[roots, None]
    centroid = torch.where(hi[roots] > lo[roots], centroid, torch.full_like(centroid, torch.nan))
    roots_global = tie_maps[roots // per_map] * per_map + roots % per_map
    return roots_global, centroid


def _refine_axis(flat: Tensor, peaks: Tensor, pos: Tensor, size: int, step: int) -> Tensor:
    """Sub-pixel position along one axis: vertex of the parabola through 3 log-values.

    The 3 cells are centred on the peak, shifted inwards at the border (the fit is exact for a
    Gaussian either way); the vertex is clamped to half a cell around the peak, one cell outwards
    at the border (a keypoint just outside the image).

    Args:
        flat: (M*H*W,) map values.
        peaks: (P,) int64 flat indices.
        pos: (P,) int64 peak coordinate along the axis.
        size: Map size along the axis.
        step: Flat-index distance between neighbouring cells along the axis (1 or W).

    Returns:
        (P,) float32 refined coordinate (the cell centre when the fit is not usable).
    """
    if size < 3 or peaks.numel() == 0:
        return pos.to(torch.float32)
    mid = peaks + (pos.clamp(1, size - 2) - pos) * step
    samples = [flat.index_select(0, mid + k * step) for k in (-1, 0, 1)]
    return parabola_vertex(samples, pos, size)


def parabola_vertex(samples: list[Tensor], pos: Tensor, size: int) -> Tensor:
    """The refinement arithmetic, shared with the exported decoder (traceable, no branches).

    Args:
        samples: Map values at the 3 cells centred on ``pos.clamp(1, size - 2)``, each shaped
            like ``pos``.
        pos: int64 peak coordinates along the axis.
        size: Map size along the axis (>= 3).

    Returns:
        float32 refined coordinates, shaped like ``pos``.
    """
    pos_f = pos.to(torch.float32)
    centre = pos.clamp(1, size - 2)
    logs = [torch.log(v.to(torch.float32).clamp_min(_LOG_FLOOR)) for v in samples]
    curvature = logs[0] - 2 * logs[1] + logs[2]
    concave = curvature < -1e-6
    vertex = centre.to(torch.float32) + 0.5 * (logs[0] - logs[2]) / torch.where(
        concave, curvature, torch.full_like(curvature, -1.0))
    low = torch.where(pos == 0, pos_f - 1.0, pos_f - 0.5)
    high = torch.where(pos == size - 1, pos_f + 1.0, pos_f + 0.5)
    return torch.where(concave, torch.minimum(torch.maximum(vertex, low), high), pos_f)
