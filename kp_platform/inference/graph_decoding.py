"""Peak decoding written as fixed-shape tensor operations, for exported files.

`DecodingModel` computes what `Detector.predict` returns, in one graph that ONNX and TorchScript
can hold: the network, max-pool NMS, top-k, the log-parabola sub-pixel refinement of
`kp_platform.heatmaps.decode_heatmaps`, the output stride, and the inverse of the resize from an
original image of a fixed size to the network input.

One difference: `decode_heatmaps` merges a plateau (equal peaks within the NMS radius) into one
detection at the plateau's centroid; here a plateau yields its first cell in raster order (a cell
is kept only when no earlier cell of its window is as high), refined like any other peak. Real
network outputs rarely hold exactly equal neighbouring values below saturation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kp_platform.heatmaps import heatmap_size
from kp_platform.heatmaps.decode import parabola_vertex

# Below every probability: padding for the max-pools, the score of non-peaks before top-k.
_BELOW = -1.0


class DecodingModel(nn.Module):
    """Network + decoding: images at the input size → top-k keypoints in original pixels.

    Args:
        network: (B, 3, h, w) in [0, 1] → (B, C, h/s, w/s) logits.
        input_size: (h, w) the network input.
        affine: (sx, sy, tx, ty) of the resize from the original image to the input,
            `x_in = sx * x_orig + tx` (`Affine.as_array()`).
        nms_radius: A peak suppresses everything within this many heatmap cells.
        score_threshold: Peaks must be strictly above it.
        top_k: Keypoints per image and channel (K); 0 or None: every heatmap cell.
        stride: Heatmap output stride s.
    """

    def __init__(self, network: nn.Module, input_size: tuple[int, int],
                 affine: tuple[float, float, float, float], nms_radius: int,
                 score_threshold: float, top_k: int | None, stride: int) -> None:
        super().__init__()
        self.network = network
        self.height, self.width = heatmap_size(input_size[0], input_size[1], stride)
        self.radius = int(nms_radius)
        self.threshold = float(score_threshold)
        self.k = min(top_k or self.height * self.width, self.height * self.width)
        self.stride = int(stride)
        sx, sy, tx, ty = (float(v) for v in affine)
        self.register_buffer("scale", torch.tensor([sx, sy]), persistent=False)
        self.register_buffer("shift", torch.tensor([tx, ty]), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Detects keypoints.

        Args:
            images: (B, 3, h, w) float RGB in [0, 1] at the input size.

        Returns:
            keypoints: (B, C, K, 3) float32 (x, y, score) in original-image pixels, best
                first; (0, 0, 0) where not valid.
            valid: (B, C, K) bool; the valid rows of a channel come first.
        """
        heat = torch.sigmoid(self.network(images).float())
        channels = heat.shape[1]
        height, width = self.height, self.width
        peak = self._peaks(heat)
        flat = heat.reshape(-1, channels, height * width)
        masked = torch.where(peak.reshape(-1, channels, height * width), flat,
                             torch.full_like(flat, _BELOW))
        scores, index = torch.topk(masked, self.k, dim=-1)
        valid = scores > _BELOW / 2
        x = _refine_axis(flat, index, index % width, width, 1)
        y = _refine_axis(flat, index, torch.div(index, width, rounding_mode="floor"), height,
                         width)
        xy = torch.stack([x, y], dim=-1) * self.stride + (self.stride - 1) / 2
        xy = (xy - self.shift) / self.scale
        keypoints = torch.cat([xy, scores.unsqueeze(-1)], dim=-1)
        keypoints = torch.where(valid.unsqueeze(-1), keypoints, torch.zeros_like(keypoints))
        return keypoints, valid

    def _peaks(self, heat: Tensor) -> Tensor:
        """(B, C, H, W) bool: above the threshold, the max of its window, and strictly above
        every earlier cell (raster order) of its window."""
        above = heat > self.threshold
        r = self.radius
        if r == 0:
            return above
        size = 2 * r + 1
        window = F.max_pool2d(heat, size, stride=1, padding=r)
        # Earlier cells of a window: the r rows above (all 2r+1 columns), and the r cells to
        # the left on the same row. Each is one max-pool over a one-sided padding.
        rows_above = F.max_pool2d(F.pad(heat, (r, r, r, 0), value=_BELOW), (r, size),
                                  stride=1)[..., : self.height, :]
        left = F.max_pool2d(F.pad(heat, (r, 0, 0, 0), value=_BELOW), (1, r),
                            stride=1)[..., : self.width]
        earlier = torch.maximum(rows_above, left)
        return above & (heat >= window) & (heat > earlier)


def _refine_axis(flat: Tensor, index: Tensor, pos: Tensor, size: int, step: int) -> Tensor:
    """Sub-pixel position along one axis, as `decode_heatmaps` refines it.

    Args:
        flat: (B, C, H*W) heatmaps.
        index: (B, C, K) flat cell indices of the peaks.
        pos: (B, C, K) int64 peak coordinate along the axis.
        size: Map size along the axis.
        step: Flat-index distance between neighbouring cells along the axis (1 or W).

    Returns:
        (B, C, K) float32: the vertex of the parabola through the log-values of the 3 cells
        around the peak (shifted inwards at the border), clamped to half a cell (one cell
        outwards at the border); the cell centre where the log-values are not concave.
    """
    if size < 3:
        return pos.to(torch.float32)
    mid = index + (pos.clamp(1, size - 2) - pos) * step
    samples = [torch.gather(flat, -1, mid + k * step) for k in (-1, 0, 1)]
    return parabola_vertex(samples, pos, size)
