"""Heatmap losses, each returned as a total and per keypoint channel for logging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_KINDS = ("bce", "focal", "mse")


def heatmap_loss(logits: Tensor, targets: Tensor, kind: str = "bce") -> tuple[Tensor, Tensor]:
    """The loss between predicted logits and Gaussian target heatmaps.

    Kinds:
        * ``bce``: binary cross-entropy with logits, averaged over batch and pixels per channel.
        * ``mse``: squared error of sigmoid(logits), averaged over batch and pixels per channel.
        * ``focal``: CenterNet's penalty-reduced focal loss (alpha=2, beta=4)::

              pos: -(1 - p)^2 log(p)                 at positive pixels
              neg: -(1 - t)^4 p^2 log(1 - p)          everywhere else

          summed over batch and pixels and divided, per channel, by max(1, number of positives
          of that channel in the batch). A positive is a pixel that is the maximum of its 3×3
          neighbourhood in the target *and* ≥ 0.5: sub-pixel Gaussian targets rarely reach
          exactly 1 (a keypoint between cell centres peaks at e.g. 0.9), so ``t == 1`` would
          miss most keypoints. Ties on a plateau all count as positives.

    Computed in float32 whatever the input dtype (mixed precision would lose the small terms).

    Args:
        logits: (B, C, H, W) raw network outputs.
        targets: (B, C, H, W) target heatmaps in [0, 1].
        kind: ``bce``, ``focal`` or ``mse`` (``model.loss``).

    Returns:
        (total, per_channel): a scalar, the sum of the (C,) per-channel losses.

    Raises:
        ValueError: Unknown kind or mismatched shapes.
    """
    if logits.shape != targets.shape or logits.dim() != 4:
        raise ValueError(
            f"logits and targets must both be (B, C, H, W), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    logits = logits.float()
    targets = targets.float()
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        per_channel = per_pixel.mean(dim=(0, 2, 3))
    elif kind == "mse":
        per_channel = (torch.sigmoid(logits) - targets).square().mean(dim=(0, 2, 3))
    elif kind == "focal":
        per_channel = _focal(logits, targets)
    else:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")
    return per_channel.sum(), per_channel


def focal_positives(targets: Tensor, threshold: float = 0.5) -> Tensor:
    """(B, C, H, W) bool: target pixels that are their 3×3 neighbourhood's maximum and ≥ 0.5."""
    local_max = F.max_pool2d(targets, kernel_size=3, stride=1, padding=1)
    return (targets == local_max) & (targets >= threshold)


def _focal(logits: Tensor, targets: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    positive = focal_positives(targets)
    prob = torch.sigmoid(logits)
    # log p and log(1 - p) from logsigmoid stay finite for saturated logits.
    pos = -(1.0 - prob).pow(alpha) * F.logsigmoid(logits)
    neg = -(1.0 - targets).pow(beta) * prob.pow(alpha) * F.logsigmoid(-logits)
    per_pixel = torch.where(positive, pos, neg)
    num_pos = positive.sum(dim=(0, 2, 3)).clamp(min=1).to(per_pixel.dtype)
    return per_pixel.sum(dim=(0, 2, 3)) / num_pos
