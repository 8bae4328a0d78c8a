"""Ground-truth heatmaps: one sub-pixel Gaussian per keypoint, batched on the keypoints' device.

Coordinates follow the project-wide pixel-centre convention: pixel (row i, col j) has its centre
at (x=j, y=i). With an output stride s, heatmap cell (i, j) covers input pixels [j*s, j*s+s) and
its centre is at x = j*s + (s-1)/2, so an input coordinate maps to x_h = (x - (s-1)/2) / s.

The Gaussian is separable, exp(-(dx² + dy²) / 2σ²) = gx(dx) * gy(dy), so it is never evaluated as
a (K, H, W) stack of 2-D exponentials: each keypoint needs a row factor (W,) and a column factor
(H,) and the heatmap is the max over keypoints of their outer products. Two strategies compute
the same values (bit for bit):

* windowed (default, ``truncate`` set): each keypoint writes only the (2ρ+1)² window around it,
  ρ = truncate * sigma, with ``scatter_reduce(amax)``. Cost ∝ keypoints × window, not × H × W.
* dense (``truncate=None``, or a window as large as the map): outer products over the whole map,
  reduced by max over keypoints in chunks.

Both bound every temporary to ``_MAX_TEMP_ELEMENTS`` elements (or one map, if larger).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Bounds every (chunk, ...) temporary, whatever K, H and W are: 1M float32 elements = 4 MiB
# (measured on the CPU, smaller chunks stay in cache and beat 16M ones by ~1.5x).
_MAX_TEMP_ELEMENTS = 1 << 20


def heatmap_size(height: int, width: int, stride: int = 1) -> tuple[int, int]:
    """The heatmap (height, width) for an input of (height, width) pixels: ceil(size / stride)."""
    return -(-height // stride), -(-width // stride)


def encode_heatmaps(
    keypoints: Tensor,
    mask: Tensor,
    height: int,
    width: int,
    sigma: float,
    stride: int = 1,
    *,
    truncate: float | None = 4.0,
    out: Tensor | None = None,
) -> Tensor:
    """Renders one Gaussian per keypoint, centred on its exact sub-pixel heatmap location.

    Value at heatmap cell (i, j): ``exp(-((j - x_h)² + (i - y_h)²) / (2 sigma²))`` with
    ``x_h = (x - (stride-1)/2) / stride`` (same for y); overlapping Gaussians combine by max. The
    peak is the Gaussian's value at the nearest cell (1.0 only when a keypoint sits exactly on a
    cell centre). Keypoints outside the image still contribute their tails.

    Args:
        keypoints: (B, C, K, 2) float (x, y) in input pixels; any device.
        mask: (B, C, K) bool, False for padding. Keypoints with a non-finite coordinate are
            treated as masked out.
        height: Input image height in pixels.
        width: Input image width in pixels.
        sigma: Gaussian standard deviation in heatmap cells (> 0).
        stride: Output stride (input pixels per heatmap cell, >= 1).
        truncate: The Gaussian is exact for |dx| <= truncate*sigma and |dy| <= truncate*sigma
            (so everywhere within that distance of the centre) and 0 beyond, per axis; at the
            default 4.0 the dropped tail is below exp(-8) ≈ 3.4e-4. ``None``: exact everywhere
            (slower: cost ∝ K × H × W instead of K × window).
        out: Optional float32 tensor of the output's shape on the keypoints' device, zeroed and
            written in place: reusing one across batches skips allocating (and, on the CPU,
            page-faulting) a fresh output, which can cost more than the encoding itself.

    Returns:
        (B, C, ceil(height/stride), ceil(width/stride)) float32 on the keypoints' device, values
        in [0, 1]; a channel without keypoints is all zeros.
    """
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be (B, C, K, 2), got {tuple(keypoints.shape)}")
    if mask.shape != keypoints.shape[:-1]:
        raise ValueError(f"mask must be {tuple(keypoints.shape[:-1])}, got {tuple(mask.shape)}")
    if height < 1 or width < 1 or stride < 1 or int(stride) != stride:
        raise ValueError(f"need height, width >= 1 and an integer stride >= 1, got "
                         f"{height}x{width}, stride {stride}")
    if not sigma > 0 or (truncate is not None and not truncate > 0):
        raise ValueError(f"sigma and truncate must be > 0, got {sigma}, {truncate}")
    batch, channels, num_kp, _ = keypoints.shape
    out_h, out_w = heatmap_size(height, width, int(stride))
    device = keypoints.device
    shape = (batch, channels, out_h, out_w)
    if out is None:
        out = torch.zeros(shape, dtype=torch.float32, device=device)
    elif out.shape != shape or out.dtype != torch.float32 or out.device != device:
        raise ValueError(f"out must be float32 {shape} on {device}, got {out.dtype} "
                         f"{tuple(out.shape)} on {out.device}")
    elif not out.is_contiguous():
        raise ValueError("out must be contiguous")
    else:
        out.zero_()
    result = out
    out = out.view(batch * channels, out_h, out_w)
    if num_kp == 0 or out.numel() == 0:
        return result

    kp = keypoints.to(torch.float32)
    offset = (stride - 1) / 2
    x_h = ((kp[..., 0] - offset) / stride).reshape(-1, num_kp)  # (M, K), M = B*C maps
    y_h = ((kp[..., 1] - offset) / stride).reshape(-1, num_kp)
    valid = (mask.to(device=device, dtype=torch.bool).reshape(-1, num_kp)
             & torch.isfinite(x_h) & torch.isfinite(y_h))
    rho = math.inf if truncate is None else float(truncate) * float(sigma)
    win = math.floor(2 * rho) + 1 if truncate is not None else None
    if win is not None and win * win < out_h * out_w:
        _encode_windowed(out, x_h, y_h, valid, float(sigma), rho, win)
    else:
        _encode_dense(out, x_h, y_h, valid, float(sigma), rho)
    return result


def _chunks(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering range(total)."""
    return [slice(start, min(total, start + size)) for start in range(0, total, size)]


def _gauss_1d(coords: Tensor, centres: Tensor, sigma: float, rho: float) -> Tensor:
    """exp(-d²/2σ²) for d = coords - centres, 0 where |d| > rho (broadcasting)."""
    d = coords - centres
    g = torch.exp(d * d * (-0.5 / (sigma * sigma)))
    return g if math.isinf(rho) else torch.where(d.abs() <= rho, g, torch.zeros_like(g))


def _encode_dense(
    out: Tensor, x_h: Tensor, y_h: Tensor, valid: Tensor, sigma: float, rho: float
) -> None:
    """Max over keypoints of gy ⊗ gx on the full map, in (map, keypoint) chunks.

    Args:
        out: (M, H, W) float32 zeros, written in place.
        x_h, y_h: (M, K) heatmap coordinates.
        valid: (M, K) bool.
    """
    maps, height, width = out.shape
    num_kp = x_h.shape[1]
    cols = torch.arange(width, device=out.device, dtype=torch.float32)
    rows = torch.arange(height, device=out.device, dtype=torch.float32)
    zero = torch.zeros((), device=out.device)
    # Masked keypoints get all-zero factors (where, not multiply: their coordinates may be NaN).
    gx = torch.where(valid[..., None], _gauss_1d(cols, x_h[..., None], sigma, rho), zero)
    gy = torch.where(valid[..., None], _gauss_1d(rows, y_h[..., None], sigma, rho), zero)
    per_map = height * width
    map_chunk = max(1, min(maps, _MAX_TEMP_ELEMENTS // per_map))
    kp_chunk = max(1, min(num_kp, _MAX_TEMP_ELEMENTS // (per_map * map_chunk)))
    for ms in _chunks(maps, map_chunk):
        for ks in _chunks(num_kp, kp_chunk):
            stack = gy[ms, ks, :, None] * gx[ms, ks, None, :]  # (m, k, H, W)
            torch.maximum(out[ms], stack.amax(dim=1), out=out[ms])


def _encode_windowed(
    out: Tensor, x_h: Tensor, y_h: Tensor, valid: Tensor, sigma: float, rho: float, win: int
) -> None:
    """Scatters each keypoint's (win, win) window into ``out`` with amax, in keypoint chunks.

    The window starts at ceil(centre - rho) and is floor(2 rho) + 1 cells wide, so it holds every
    cell within rho of the centre; cells outside the map are written as 0 to a clamped index,
    which a max into a non-negative map leaves unchanged.

    Args:
        out: (M, H, W) float32 zeros, written in place.
        x_h, y_h: (M, K) heatmap coordinates.
        valid: (M, K) bool.
        win: Window side, floor(2 rho) + 1, smaller than the map.
    """
    _, height, width = out.shape
    num_kp = x_h.shape[1]
    flat_idx = valid.reshape(-1).nonzero().squeeze(1)  # (N,) over M*K
    map_id = flat_idx // num_kp
    xs, ys = x_h.reshape(-1)[flat_idx], y_h.reshape(-1)[flat_idx]
    steps = torch.arange(win, device=out.device)
    flat_out = out.view(-1)
    chunk = max(1, _MAX_TEMP_ELEMENTS // (win * win))
    for sl in _chunks(flat_idx.numel(), chunk):
        cols, gx = _window_1d(xs[sl], width, sigma, rho, steps)
        rows, gy = _window_1d(ys[sl], height, sigma, rho, steps)
        values = gy[:, :, None] * gx[:, None, :]  # (n, win, win)
        index = (map_id[sl, None, None] * (height * width)
                 + rows[:, :, None] * width + cols[:, None, :])
        flat_out.scatter_reduce_(0, index.reshape(-1), values.reshape(-1), reduce="amax")


def _window_1d(
    centres: Tensor, size: int, sigma: float, rho: float, steps: Tensor
) -> tuple[Tensor, Tensor]:
    """Cell indices (clamped into the map) and Gaussian factors of each centre's window.

    Args:
        centres: (n,) float32 heatmap coordinates along one axis.
        size: Map size along that axis.
        steps: (win,) arange.

    Returns:
        (n, win) int64 indices in [0, size) and (n, win) float32 factors, 0 outside the map.
    """
    # Clamping far-away centres keeps the int64 start finite; their windows stay off the map.
    start = torch.ceil(centres.clamp(-rho - 2, size + rho + 2) - rho).long()
    cells = start[:, None] + steps  # (n, win)
    g = _gauss_1d(cells.to(torch.float32), centres[:, None], sigma, rho)
    inside = (cells >= 0) & (cells < size)
    return cells.clamp(0, size - 1), torch.where(inside, g, torch.zeros_like(g))
