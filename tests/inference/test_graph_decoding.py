from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kp_platform.heatmaps import decode_heatmaps
from kp_platform.inference.graph_decoding import DecodingModel


def smooth_maps(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, C, H, W) probabilities with many separate, curved peaks (some on the border)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1,
                                            count_include_pad=False)
    return torch.sigmoid(4 * smooth - 2)


@pytest.mark.parametrize("radius,top_k,stride,affine", [
    (2, 20, 1, (1.0, 1.0, 0.0, 0.0)),
    (1, 0, 2, (0.5, 0.75, -0.25, 3.0)),
    (3, 5, 4, (2.0, 2.0, 0.5, 0.5)),
    (0, 7, 1, (1.0, 1.0, 0.0, 0.0)),
])
def test_graph_decoding_equals_decode_heatmaps(radius, top_k, stride, affine):
    maps = smooth_maps(radius, (3, 2, 17, 23))
    model = DecodingModel(nn.Identity(), (17 * stride, 23 * stride), affine, radius, 0.2,
                          top_k, stride)
    keypoints, valid = model(torch.logit(maps.double()).float())
    expected = decode_heatmaps(maps, radius, 0.2, top_k or None, stride)
    per_image = expected.to_original(np.tile(affine, (3, 1))).to_lists()
    assert valid.sum() > 20
    for b in range(3):
        for c in range(2):
            want = per_image[b][c]
            got = keypoints[b, c][valid[b, c]].double().numpy()
            assert valid[b, c, : len(got)].all()  # valid rows come first
            assert got.shape == want.shape
            np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=0, atol=1e-4)
            np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=0, atol=1e-6)
    assert (keypoints[~valid] == 0).all()


def test_a_plateau_gives_one_detection_at_its_first_cell():
    maps = torch.full((1, 1, 9, 9), 0.01)
    maps[0, 0, 3:6, 3:6] = 0.9  # a saturated 3x3 plateau
    maps[0, 0, 3, 8] = 0.9  # a tied peak in the same rows, out of the plateau's reach
    keypoints, valid = DecodingModel(nn.Identity(), (9, 9), (1, 1, 0, 0), 1, 0.1, 4, 1)(
        torch.logit(maps))
    assert valid.sum() == 2
    # The plateau's first cell (3, 3), refined half a cell towards its equal neighbours.
    found = sorted(tuple(p) for p in keypoints[0, 0, :2, :2].tolist())
    assert found == [(3.5, 3.5), (8.0, 3.0)]
    # decode_heatmaps reports the same plateau at its centroid (4, 4).
    detections = decode_heatmaps(maps, 1, 0.1, 4).to_lists()[0][0]
    assert sorted(tuple(p) for p in detections[:, :2].tolist()) == [(4.0, 4.0), (8.0, 3.0)]
