"""Top-1 pixel error, PCK and swap rate: the figures DeepLabCut and Lightning Pose users compare.

They apply to *single-instance* channels, those with at most one labelled keypoint per image
(a mouse's left fore paw, a tool tip). In each image, a channel's prediction is its
best-scoring peak, and for each labelled (image, channel) pair:

- **error**: the L2 distance in original-image pixels from the labelled point to that peak.
  A channel with no peak in the image counts as the image's diagonal (the largest error a
  point inside the image can have), so a silent channel never looks good;
- **PCK@T**: whether the peak lies within T pixels (+1e-5, as the AP's matching);
- **swap**: whether the peak lies strictly nearer another channel's labelled point in the same
  image than its own (left for right, fore for hind). No peak, no swap.

Per channel and overall (pooled over every labelled pair of every single-instance channel, as
the field reports a data set's mean error): the mean and median error, PCK at each threshold
and the swap rate. Pairs whose channel holds several labelled points in that image count
nowhere (AP covers multi-instance channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from kp_platform.errors import InputError
from kp_platform.metrics.average_precision import threshold_key

_TOLERANCE = 1e-5


def top1_pairs(
    det_xy: torch.Tensor,
    det_valid: torch.Tensor,
    gt_xy: torch.Tensor,
    gt_valid: torch.Tensor,
    image_size: torch.Tensor,
    channels: Sequence[int],
) -> dict[str, torch.Tensor]:
    """The labelled (image, channel) pairs of one batch with their top-1 error and swap flag.

    Args:
        det_xy: (B, C, D, 2) detections in original-image pixels, best first per channel.
        det_valid: (B, C, D) bool; the valid slots of a channel are a prefix.
        gt_xy: (B, C, G, 2) ground truth in original-image pixels.
        gt_valid: (B, C, G) bool.
        image_size: (B, 2) original [height, width] of each image.
        channels: Indices of the single-instance channels.

    Returns:
        ``error`` (N,) float64, ``channel`` (N,) int64 (index into ``channels``), ``swapped``
        (N,) bool and ``found`` (N,) bool (the channel had a peak), for the N pairs whose
        channel holds exactly one labelled point.
    """
    device = det_xy.device
    index = torch.as_tensor(list(channels), dtype=torch.long, device=device)
    gt_xy, gt_valid = gt_xy.to(device, torch.float64), gt_valid.to(device).bool()
    labelled = gt_valid.sum(dim=2) == 1  # (B, C)
    # The one labelled point of each (image, channel): the first valid slot.
    own = torch.gather(gt_xy, 2, gt_valid.long().argmax(dim=2)[..., None, None]
                       .expand(-1, -1, 1, 2)).squeeze(2)  # (B, C, 2)
    peak = det_xy[:, :, 0].to(torch.float64)  # (B, C, 2), best first
    found = det_valid[:, :, 0].to(device).bool()
    error = torch.linalg.vector_norm(peak - own, dim=-1)  # (B, C)
    size = image_size.to(device, torch.float64)
    diagonal = torch.linalg.vector_norm(size, dim=-1)[:, None].expand_as(error)
    error = torch.where(found, error, diagonal)
    # Distance from each peak to every labelled point of every other channel of its image.
    to_all = torch.linalg.vector_norm(peak[:, :, None, None, :] - gt_xy[:, None], dim=-1)
    others = gt_valid[:, None].expand(-1, gt_xy.shape[1], -1, -1).clone()  # (B, C, C', G)
    eye = torch.eye(gt_xy.shape[1], dtype=torch.bool, device=device)
    others[:, eye] = False
    nearest_other = torch.where(others, to_all, torch.inf).amin(dim=(2, 3))  # (B, C)
    swapped = found & (nearest_other < error)
    keep = labelled.index_select(1, index)  # (B, K)
    channel = torch.arange(len(index), device=device).expand_as(keep)
    picked = {name: value.index_select(1, index)[keep] for name, value in
              (("error", error), ("swapped", swapped), ("found", found))}
    return {**picked, "channel": channel[keep]}


def top1_summary(
    error: torch.Tensor, channel: torch.Tensor, swapped: torch.Tensor, found: torch.Tensor,
    channel_names: Sequence[str], thresholds: Sequence[float],
) -> dict[str, Any]:
    """The ``top1`` section of the metrics JSON from pooled pairs (see `top1_pairs`).

    Returns:
        ``{"channels", "error_px": {name: {"mean", "median", "num"}}, "pck": {name: {T: ...}},
        "swap_rate": {name: ...}, "missing": {name: n}, "overall": {"mean", "median", "pck",
        "swap_rate", "num"}}``, plain Python numbers; None where a channel has no labelled pair.
    """
    error = error.detach().cpu().to(torch.float64).numpy()
    channel = channel.detach().cpu().to(torch.int64).numpy()
    swapped = swapped.detach().cpu().bool().numpy()
    found = found.detach().cpu().bool().numpy()

    def stats(sel: np.ndarray) -> dict[str, Any]:
        num = int(sel.sum())
        values = np.sort(error[sel])  # sorted: the same sum in any pooling order
        return {
            "mean": float(values.mean()) if num else None,
            "median": float(np.median(values)) if num else None,
            "num": num,
            "pck": {threshold_key(t): (float((values <= t + _TOLERANCE).mean()) if num else None)
                    for t in thresholds},
            "swap_rate": float(swapped[sel].mean()) if num else None,
            "missing": int((~found[sel]).sum()),
        }

    per_channel = {name: stats(channel == c) for c, name in enumerate(channel_names)}
    overall = stats(np.ones_like(channel, dtype=bool))
    return {
        "channels": list(channel_names),
        "error_px": {name: {k: s[k] for k in ("mean", "median", "num")}
                     for name, s in per_channel.items()},
        "pck": {name: s["pck"] for name, s in per_channel.items()},
        "swap_rate": {name: s["swap_rate"] for name, s in per_channel.items()},
        "missing": {name: s["missing"] for name, s in per_channel.items()},
        "overall": {k: overall[k] for k in ("mean", "median", "pck", "swap_rate", "num")},
    }


class Top1Error(Metric):
    """Top-1 error, PCK and swap rate of the single-instance channels, over an evaluation.

    Synchronised across DDP ranks like `KeypointAP` (``cat`` states); the statistics do not
    depend on the order in which images came.

    Args:
        channel_names: All C channel names, in the tensors' channel order.
        top1_channels: The single-instance channels among them.
        thresholds: PCK thresholds in pixels.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, channel_names: Sequence[str], top1_channels: Sequence[str],
                 thresholds: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        unknown = [name for name in top1_channels if name not in channel_names]
        if unknown:
            raise InputError(f"top-1 channels {unknown} are not among the channels "
                             f"{list(channel_names)}", "eval.top1_channels")
        self.channel_names = list(top1_channels)
        self._index = [list(channel_names).index(name) for name in top1_channels]
        self.thresholds = [float(t) for t in thresholds]
        for name in ("error", "channel", "swapped", "found"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, det_xy: torch.Tensor, det_valid: torch.Tensor, gt_xy: torch.Tensor,
               gt_valid: torch.Tensor, image_size: torch.Tensor) -> None:
        """Adds one batch (shapes as in `top1_pairs`)."""
        pairs = top1_pairs(det_xy, det_valid, gt_xy, gt_valid, image_size, self._index)
        self.error.append(pairs["error"])
        self.channel.append(pairs["channel"].to(torch.float64))  # see KeypointAP's note
        self.swapped.append(pairs["swapped"].to(torch.uint8))
        self.found.append(pairs["found"].to(torch.uint8))

    def _cat(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        if isinstance(value, list):
            value = dim_zero_cat(value) if value else torch.zeros(0, device=self.device)
        return value

    def compute(self) -> dict[str, Any]:
        return top1_summary(self._cat("error"), self._cat("channel"), self._cat("swapped"),
                            self._cat("found"), self.channel_names, self.thresholds)
