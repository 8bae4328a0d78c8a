from __future__ import annotations

import torch

from kp_platform.training.visualize import PALETTE, render_predictions


def test_grid_layout_and_markers():
    images = torch.zeros(3, 3, 20, 30)
    heatmaps = torch.zeros(3, 2, 10, 15)
    det = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]]]] * 3)
    det_valid = torch.tensor([[[True], [False]]] * 3)
    gt = torch.tensor([[[[20.0, 10.0]], [[10.0, 15.0]]]] * 3)
    gt_mask = torch.ones(3, 2, 1, dtype=torch.bool)
    grid = render_predictions(images, heatmaps, det, det_valid, gt, gt_mask, max_images=2)
    assert grid.shape == (40, 90, 3)
    points = grid[:20, 60:]
    assert tuple(points[5, 5]) == PALETTE[0]  # detection cross of channel 0
    # ground truth: anti-aliased circles of radius 3, hollow
    assert points[10, 23].any() and not points[10, 20].any()
    assert points[15, 13].any() and not points[15, 10].any()
    assert not grid[:20, :30].any()  # the black input stays black
