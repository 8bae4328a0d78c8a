"""The heatmap head: per-channel logits on top of any backbone's features."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class HeatmapHead(nn.Module):
    """3×3 conv + ReLU + 1×1 conv to one logit map per keypoint channel.

    The hidden 3×3 conv has ``hidden`` channels, at least as many as the input: a narrow
    backbone (8 channels) feeding an equally narrow head plateaued at 0.6 AP on 4 images it
    should memorise; a 32-channel head on the same backbone reaches 1.0, for a small share of
    the network's cost.

    The final bias starts at log(prior / (1 - prior)) and the final weights near zero, so every
    initial sigmoid output is ≈ ``prior`` (CenterNet's low prior): training starts from "almost
    no keypoint anywhere" instead of 0.5 everywhere, which would swamp the loss with negatives.

    With ``coords`` the hidden conv also sees two coordinate maps (x and y, from -1 to 1 across
    the feature map, as in CoordConv): a convolution is translation-equivariant, so alone it
    answers "which keypoint looks like this?" the same everywhere; where the camera is fixed
    (most lab set-ups), where a look-alike keypoint sits in the frame tells it apart (a left
    paw from a right one).

    Args:
        in_channels: Backbone feature channels (also the hidden width).
        num_channels: Output heatmap channels.
        prior: Initial heatmap probability, in (0, 1).
        hidden: Channels of the hidden conv (raised to ``in_channels`` if smaller).
        coords: Append the two coordinate maps to the features.

    Shapes:
        (B, in_channels, h, w) -> (B, num_channels, h, w) logits.
    """

    def __init__(
        self, in_channels: int, num_channels: int, prior: float = 0.01, hidden: int = 32,
        coords: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_channels < 1:
            raise ValueError(f"channels must be >= 1, got {in_channels}, {num_channels}")
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        self.num_channels = num_channels
        self.coords = coords
        hidden = max(hidden, in_channels)
        self.hidden = nn.Conv2d(in_channels + (2 if coords else 0), hidden, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.logits = nn.Conv2d(hidden, num_channels, 1)
        # A zero hidden bias and tiny final weights keep initial logits ≈ the bias for any input.
        nn.init.zeros_(self.hidden.bias)
        nn.init.normal_(self.logits.weight, std=1e-3)
        nn.init.constant_(self.logits.bias, math.log(prior / (1.0 - prior)))

    def forward(self, features: Tensor) -> Tensor:
        if self.coords:
            features = torch.cat([features, coordinate_maps(features)], dim=1)
        return self.logits(self.relu(self.hidden(features)))


def coordinate_maps(features: Tensor) -> Tensor:
    """(B, 2, h, w): x then y, each from -1 to 1 across the map, in the features' dtype."""
    batch, _, height, width = features.shape
    ys = torch.linspace(-1.0, 1.0, height, device=features.device, dtype=features.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=features.device, dtype=features.dtype)
    ys, xs = ys.view(1, 1, height, 1), xs.view(1, 1, 1, width)
    return torch.cat([xs.expand(batch, 1, height, width), ys.expand(batch, 1, height, width)],
                     dim=1)
