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


def test_pr_plot_draws_one_panel_per_channel():
    import numpy as np

    from kp_platform.training.visualize import pr_curves_figure, render_pr_curves

    curve = (np.array([0.0, 0.5, 1.0, 1.0]), np.array([1.0, 1.0, 0.5, 0.0]))
    curves = {"a": {"2": curve}, "b": {"2": curve, "4": curve}}
    figure = pr_curves_figure(curves, panel=100)
    assert [axes.get_title() for axes in figure.axes] == ["a", "b"]
    assert [len(axes.get_lines()) for axes in figure.axes] == [1, 2]
    # the step the AP integrates: precision 0.5 over recall (0.5, 1], drawn at recall 1
    x, y = figure.axes[0].get_lines()[0].get_data()
    assert list(x) == [0.0, 0.5, 1.0, 1.0] and list(y) == [1.0, 1.0, 0.5, 0.0]
    assert figure.axes[0].get_lines()[0].get_drawstyle() == "steps-pre"
    plot = render_pr_curves(curves, panel=100)
    assert plot.shape == (100, 200, 3) and plot.dtype == np.uint8
    assert (plot != 255).any() and (plot == 255).any()  # lines on a white background
    assert render_pr_curves({}).shape[2] == 3
