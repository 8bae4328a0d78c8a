"""heatmap_loss: bce, mse and CenterNet's focal loss, per channel and in total."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kp_platform.models import LOSS_KINDS, heatmap_loss
from kp_platform.models.losses import focal_positives


def gaussian_targets(peak: float = 1.0) -> torch.Tensor:
    """(2, 3, 9, 11) targets: Gaussians of height `peak` in channels 0 and 1; channel 2 empty."""
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    blob = peak * torch.exp(-((cols - 4) ** 2 + (rows - 5) ** 2) / 2)
    targets = torch.zeros(2, 3, 9, 11)
    targets[:, 0] = blob
    targets[:, 1] = blob.flip(-1)
    return targets


def perfect_logits(targets: torch.Tensor) -> torch.Tensor:
    """Logits whose sigmoid is the target (clamped so they stay finite), peaks pushed to ~1."""
    logits = torch.logit(targets.clamp(1e-4, 1 - 1e-4))
    return torch.where(focal_positives(targets), torch.full_like(logits, 9.0), logits)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_perfect_logits_beat_wrong_ones(kind: str) -> None:
    targets = gaussian_targets()
    good, good_channels = heatmap_loss(perfect_logits(targets), targets, kind)
    bad, bad_channels = heatmap_loss(-perfect_logits(targets), targets, kind)
    flat, _ = heatmap_loss(torch.zeros_like(targets), targets, kind)
    assert good < flat < bad
    assert (good_channels < bad_channels).all()


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_per_channel_values_sum_to_the_total_and_gradients_flow(kind: str) -> None:
    targets = gaussian_targets(peak=0.9)
    logits = torch.randn(targets.shape, requires_grad=True)
    total, per_channel = heatmap_loss(logits, targets, kind)
    assert total.dim() == 0 and per_channel.shape == (3,)
    torch.testing.assert_close(total, per_channel.sum())
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bce_and_mse_average_over_batch_and_pixels() -> None:
    targets = gaussian_targets()
    logits = torch.randn(targets.shape)
    _, bce = heatmap_loss(logits, targets, "bce")
    expected = torch.stack([F.binary_cross_entropy_with_logits(logits[:, c], targets[:, c])
                            for c in range(3)])
    torch.testing.assert_close(bce, expected)
    _, mse = heatmap_loss(logits, targets, "mse")
    expected = torch.stack([F.mse_loss(torch.sigmoid(logits[:, c]), targets[:, c])
                            for c in range(3)])
    torch.testing.assert_close(mse, expected)


def test_empty_channel_has_only_negative_terms() -> None:
    targets = gaussian_targets()
    logits = torch.randn(targets.shape)
    p = torch.sigmoid(logits[:, 2])
    _, focal = heatmap_loss(logits, targets, "focal")
    # No positives: normalised by max(1, 0) = 1, and every pixel is a full-weight negative.
    torch.testing.assert_close(focal[2], -(p**2 * torch.log(1 - p)).sum())
    _, bce = heatmap_loss(logits, targets, "bce")
    torch.testing.assert_close(bce[2], -torch.log(1 - p).mean())
    # A confident "nothing here" costs almost nothing.
    _, focal = heatmap_loss(torch.full_like(targets, -12.0), targets, "focal")
    assert focal[2] < 1e-8


def test_focal_counts_a_0_9_peak_as_positive() -> None:
    targets = gaussian_targets(peak=0.9)
    positives = focal_positives(targets)
    assert positives.sum(dim=(0, 2, 3)).tolist() == [2, 2, 0]
    assert positives[0, 0, 5, 4] and positives[0, 1, 5, 6]
    # Below 0.5 a local maximum is only a tail, not a keypoint.
    assert focal_positives(gaussian_targets(peak=0.4)).sum() == 0
    logits = torch.zeros_like(targets)
    _, focal = heatmap_loss(logits, targets, "focal")
    # One positive per image and channel: the positive term -(1-p)^2 log p at p = 0.5 ...
    pos = 0.25 * torch.log(torch.tensor(2.0))
    # ... plus the penalty-reduced negatives, all divided by the 2 positives.
    neg = ((1 - targets[:, 0]) ** 4 * 0.25 * torch.log(torch.tensor(2.0)))
    neg = neg.sum() - neg[:, 5, 4].sum()
    torch.testing.assert_close(focal[0], (2 * pos + neg) / 2)


def test_focal_is_finite_for_saturated_logits() -> None:
    targets = gaussian_targets()
    logits = torch.where(targets > 0.5, -80.0, 80.0).requires_grad_()
    total, _ = heatmap_loss(logits, targets, "focal")
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logits.grad).all()


def test_half_precision_logits_are_computed_in_float32() -> None:
    targets = gaussian_targets()
    logits = torch.randn(targets.shape)
    total16, _ = heatmap_loss(logits.bfloat16(), targets, "focal")
    assert total16.dtype == torch.float32


def test_bad_kind_or_shapes() -> None:
    targets = gaussian_targets()
    with pytest.raises(ValueError, match="unknown loss kind"):
        heatmap_loss(targets, targets, "l1")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        heatmap_loss(targets[:, :2], targets)
