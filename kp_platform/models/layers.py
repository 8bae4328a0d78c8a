"""Layers shared by the from-scratch backbones, the timm encoder-decoder and the seed U-Net:
input normalisation, the conv-BN-ReLU blocks and the stride arithmetic."""

from __future__ import annotations

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def exact_log2(value: int) -> int:
    """log2 of a power of two (an output stride or an encoder reduction); ValueError otherwise."""
    if value < 1 or value & (value - 1):
        raise ValueError(f"output_stride must be a power of two, got {value}")
    return value.bit_length() - 1


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1d, 2d, 3d, synchronised) inside `module`."""
    return [layer for layer in module.modules()
            if isinstance(layer, nn.modules.batchnorm._BatchNorm)]


class Normalize(nn.Module):
    """(x - mean) / std per RGB channel; mean and std are (1, 3, 1, 1) buffers."""

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """3×3 conv (no bias: BN follows) + BatchNorm + ReLU; keeps the size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """The U-Net block: two 3×3 conv-BN-ReLU."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels),
                         conv_bn_relu(out_channels, out_channels))
