"""The heatmap head's coordinate maps: position in the frame reaches the head."""

from __future__ import annotations

import torch

from kp_platform.models.head import HeatmapHead, coordinate_maps


def test_coordinate_maps_run_from_minus_one_to_one_across_the_map():
    maps = coordinate_maps(torch.zeros(2, 4, 3, 5, dtype=torch.float64))
    assert maps.shape == (2, 2, 3, 5) and maps.dtype == torch.float64
    assert torch.equal(maps[0, 0, 0], torch.linspace(-1, 1, 5, dtype=torch.float64))  # x
    assert torch.equal(maps[1, 1, :, 0], torch.linspace(-1, 1, 3, dtype=torch.float64))  # y


def test_only_a_head_with_coordinates_tells_positions_apart_on_uniform_features():
    torch.manual_seed(0)
    features = torch.ones(1, 8, 9, 9)
    for coords, differs in ((False, False), (True, True)):
        head = HeatmapHead(8, 1, coords=coords)
        torch.nn.init.normal_(head.logits.weight)  # the init keeps outputs near the bias
        logits = head(features)[0, 0, 1:-1, 1:-1]  # away from the zero padding
        assert bool((logits.max() - logits.min()) > 1e-4) is differs
