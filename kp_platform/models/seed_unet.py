"""`seed_unet`: a reference backbone shaped like the seed framework's default U-Net.

The framework this project grew from trains, by default, a small U-Net of constant width (32
channels) with two max-pool down-samplings and a residual block at every level (about 0.11 M
parameters with its one-conv head). ``benchmarks/bench_time_to_accuracy.py`` trains this
backbone with the seed's published defaults (BCE, Adam 3e-4, batch 8, 0.01 score floor) as the
reference that the project's own defaults must beat; it is a registered backbone like any
other, so it can also be selected with ``model.backbone=seed_unet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kp_platform.models.backbones import DilatedBlock, register_backbone
from kp_platform.models.layers import Normalize, conv_bn_relu, exact_log2


class SeedUNet(nn.Module):
    """Constant-width residual U-Net.

    Stem conv, then per level a residual block and a 2× max-pool, a residual block at the
    bottom, and per level on the way up a bilinear 2× upsample, concatenation with the skip,
    a conv back to ``width`` channels and a residual block. The decoder stops at
    ``output_stride``.

    Args:
        width: Channels everywhere.
        downsamplings: Max-pool levels (at least log2(output_stride)).
        output_stride: 1, 2, 4 or 8.

    Shapes:
        (B, 3, H, W) in [0, 1] -> (B, width, ceil(H / s), ceil(W / s)).
    """

    def __init__(self, width: int = 32, downsamplings: int = 2, output_stride: int = 1) -> None:
        super().__init__()
        last = exact_log2(output_stride)
        levels = max(downsamplings, last)
        self.output_stride = output_stride
        self.out_channels = width
        self.pad_multiple = 2**levels
        self.normalize = Normalize()
        self.stem = conv_bn_relu(3, width)
        # The residual blocks: DilatedBlock at dilation 1 (conv-BN-ReLU, conv-BN, identity).
        self.down = nn.ModuleList(DilatedBlock(width, 1) for _ in range(levels))
        self.bottom = DilatedBlock(width, 1)
        self.fuse = nn.ModuleList(conv_bn_relu(2 * width, width) for _ in range(levels - last))
        self.up = nn.ModuleList(DilatedBlock(width, 1) for _ in range(levels - last))

    def forward(self, images: Tensor) -> Tensor:
        x = self.normalize(images)
        height, width = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        x = self.stem(F.pad(x, [0, (m - width % m) % m, 0, (m - height % m) % m]))
        skips: list[Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for fuse, block in zip(self.fuse, self.up, strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(fuse(torch.cat([skips.pop(), x], dim=1)))
        s = self.output_stride
        return x[:, :, : (height + s - 1) // s, : (width + s - 1) // s]


@register_backbone
def seed_unet(output_stride: int = 1) -> SeedUNet:
    """The seed framework's default U-Net shape (fixed: ignores ``model.width`` / ``depth``)."""
    return SeedUNet(width=32, downsamplings=2, output_stride=output_stride)
