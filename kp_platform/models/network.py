"""The whole network: a backbone and a heatmap head as one exportable module."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from kp_platform.config.schema import HeatmapConfig, ModelConfig
from kp_platform.models.backbones import build_backbone
from kp_platform.models.head import HeatmapHead


class KeypointNet(nn.Module):
    """Backbone + :class:`HeatmapHead`; images in, heatmap logits out.

    Forward has no data-dependent Python control flow (odd-size padding is computed from
    shapes), so it works with ``torch.jit.trace``, and its :meth:`exportable` copy with
    ``torch.onnx.export``.

    Weights, images and activations are kept channels-last (NHWC): a training step of every
    backbone here took 12-29% less time so on a CPU (`benchmarks/bench_layout.py`), and GPU
    tensor cores prefer it too. Only the memory layout differs; the function is the same (up to
    floating-point rounding). The weights alone do not do it: with NCHW images the default
    U-Net was 8% slower.

    Args:
        backbone: Module with ``out_channels`` and ``output_stride`` attributes.
        head: Maps backbone features to logits.

    Shapes:
        (B, 3, H, W) float in [0, 1] -> (B, C, ceil(H / s), ceil(W / s)) logits,
        s = ``output_stride``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.output_stride: int = int(backbone.output_stride)
        self.channels_last: bool = True
        self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(images))

    def exportable(self) -> KeypointNet:
        """A copy in NCHW layout, for `torch.onnx.export`: with channels-last weights
        torch.export guards the batch size (at most 2), so a dynamic batch fails."""
        network = copy.deepcopy(self)
        network.channels_last = False
        return network.to(memory_format=torch.contiguous_format)


def build_network(
    model_cfg: ModelConfig, heatmap_cfg: HeatmapConfig, num_channels: int
) -> KeypointNet:
    """Builds the configured network.

    Reads ``model.backbone``, ``model.width``, ``model.depth``, ``model.pretrained``,
    ``model.pretrained_path``, ``model.head_prior``, ``model.head_width``,
    ``model.coord_channels`` and ``heatmap.stride``
    (the output stride).

    Args:
        model_cfg: The ``model`` config section.
        heatmap_cfg: The ``heatmap`` config section.
        num_channels: Keypoint channels (heatmaps) to predict.

    Raises:
        InputError: See :func:`~kp_platform.models.backbones.build_backbone`.
    """
    backbone = build_backbone(model_cfg, heatmap_cfg.stride)
    head = HeatmapHead(backbone.out_channels, num_channels, prior=model_cfg.head_prior,
                       hidden=model_cfg.head_width, coords=model_cfg.coord_channels)
    return KeypointNet(backbone, head)
