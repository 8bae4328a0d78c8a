"""Every backbone's output grid lies where the heatmap targets put it: no half-pixel bias.

Targets place heatmap cell j at stride s on input pixel ``j * s + (s - 1) / 2`` (the centre of
the s input pixels it covers). Where a backbone's cell is centred is measured with a linear
probe: a copy whose convolutions average (positive weights summing to 1), whose normalisations
and activations are the identity and whose max-pools are average pools. Every layer is then
linear, and an output cell's value on the ramp image ``x`` divided by its value on a constant
image is the centroid of its impulse response: the input position the cell is centred on.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kp_platform.heatmaps import decode_heatmaps, encode_heatmaps
from kp_platform.models.backbones import create_backbone, list_backbones
from kp_platform.models.grid_offsets import linear_probe

SIZE = 256  # large enough that the centre cells hardly feel the borders
# A ResNet's "same"-padded stride-2 convs centre level-r cells on r * j, not r * j + (r - 1) / 2
# (0.85 px off at output stride 1, 4 px at 8, before EncoderDecoder resampled each level from
# its measured offset); resnet10t's average-pooled shortcuts put its levels elsewhere again.
# (ConvNeXt's patchify stem and 2×2 downsampling are aligned by construction; its LayerNorm
# and layer-scale blocks defeat the linear probe, so it is not measured here.)
TIMM_CASES = [("timm:resnet18", s) for s in (1, 2, 4, 8)] + [("timm:resnet10t", 1)]


def cell_centres(backbone: nn.Module, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(x centres of the middle row's cells, y centres of the middle column's), input pixels."""
    monkeypatch.setattr(F, "max_pool2d", lambda x, k, *a, **kw: F.avg_pool2d(x, k, *a, **kw))
    monkeypatch.setattr(F, "relu", lambda x, *a, **kw: x)
    probe = linear_probe(backbone)  # also what EncoderDecoder's offsets are measured with
    coords = torch.arange(SIZE, dtype=torch.float64)
    ramp_x = coords.view(1, 1, 1, -1).expand(1, 3, SIZE, SIZE)
    ramp_y = coords.view(1, 1, -1, 1).expand(1, 3, SIZE, SIZE)
    ones = torch.ones(1, 3, SIZE, SIZE, dtype=torch.float64)
    probe = probe.double()
    with torch.no_grad():
        out_x, out_y, out_1 = (probe(t).mean(dim=1)[0] for t in (ramp_x, ramp_y, ones))
    middle = out_1.shape[0] // 2
    return out_x[middle] / out_1[middle], out_y[:, middle] / out_1[:, middle]


def cases() -> list:
    return [(name, stride) for name in list_backbones() for stride in (1, 2, 4, 8)] + TIMM_CASES


@pytest.mark.parametrize("name, stride", cases())
def test_output_cells_are_centred_where_the_targets_are(
    name: str, stride: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {"width": 4, "depth": 2} if name in ("unet", "dilated_cnn") else {}
    if name.startswith("timm:"):
        kwargs = {"width": 4}
    backbone = create_backbone(name, output_stride=stride, **kwargs)
    centres_x, centres_y = cell_centres(backbone, monkeypatch)
    cells = len(centres_x)
    expected = torch.arange(cells, dtype=torch.float64) * stride + (stride - 1) / 2
    middle = slice(cells // 2 - 2, cells // 2 + 2)  # the cells least touched by the borders
    torch.testing.assert_close(centres_x[middle], expected[middle], atol=0.02, rtol=0)
    torch.testing.assert_close(centres_y[middle], expected[middle], atol=0.02, rtol=0)


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_a_perfectly_learned_target_decodes_to_the_label(stride: int) -> None:
    keypoints = torch.tensor([[[[30.3, 41.7], [77.8, 12.2]]]])  # (B, C, K, 2), sub-pixel
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    targets = encode_heatmaps(keypoints, mask, 96, 96, sigma=2.0, stride=stride)
    detections = decode_heatmaps(targets, nms_radius=2, score_threshold=0.01, stride=stride)
    found = detections.xy[0, 0][detections.valid[0, 0]]
    found = found[found[:, 0].argsort()]
    torch.testing.assert_close(found, keypoints[0, 0], atol=2e-3, rtol=0)
