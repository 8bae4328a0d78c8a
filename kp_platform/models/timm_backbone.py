"""``timm:<encoder>`` backbones: a timm ``features_only`` encoder plus a light U-Net decoder.

timm is imported only inside :func:`create_timm_backbone`, so ``import kp_platform`` stays
fast. The decoder, :class:`EncoderDecoder`, works with any encoder that
has timm's feature-extraction interface (``feature_info.channels()``,
``feature_info.reduction()``, and a forward returning one NCHW map per level, shallow to deep),
so it is usable and testable without timm.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kp_platform.errors import InputError, first_line
from kp_platform.models.grid_offsets import aligned_offsets, measure_offsets
from kp_platform.models.layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    conv_bn_relu,
    exact_log2,
)


class EncoderDecoder(nn.Module):
    """A feature-pyramid encoder and a light U-Net decoder that stops at ``output_stride``.

    The deepest encoder level is projected to ``width`` channels; then, level by level towards
    the shallowest one whose reduction is >= ``output_stride``, the running map is upsampled
    bilinearly to that level's size, concatenated with it and fused by a 3×3 conv-BN-ReLU to
    ``width`` channels. If even that level is coarser than ``output_stride`` (e.g. a convnext's
    stride-4 first level with output stride 1), ×2 upsample + conv-BN-ReLU stages follow.
    Levels finer than ``output_stride`` are not used. The input is zero-padded (after
    normalisation) to a multiple of the coarsest reduction, so every level has an exact size
    whatever the encoder's padding rules, and the output is cropped back.

    Every resampling knows where each grid's cells sit on the input (``offsets``), and the
    output grid is the targets' one (cell j on ``s * j + (s - 1) / 2``), so a ResNet's early
    cells add no sub-pixel bias.

    Args:
        encoder: Module with ``feature_info.channels()`` and ``feature_info.reduction()``
            (one int per level, reductions ascending powers of two) whose forward maps
            (B, 3, H, W) to a list of (B, channels[i], H / reduction[i], W / reduction[i]).
        width: Decoder channels (the backbone's ``out_channels``).
        output_stride: 1, 2, 4 or 8.
        mean: Per-channel input mean the encoder expects (on [0, 1] images).
        std: Per-channel input standard deviation.
        offsets: Per level, the input pixel its cell 0 is centred on (cell j: ``r * j +
            offset``), as `grid_offsets.measure_offsets` finds; None: ``(r - 1) / 2``, the
            targets' convention.

    Shapes:
        (B, 3, H, W) in [0, 1] -> (B, width, ceil(H / s), ceil(W / s)).
    """

    def __init__(
        self,
        encoder: nn.Module,
        width: int = 32,
        output_stride: int = 1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        offsets: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in encoder.feature_info.channels()]
        reductions = [int(r) for r in encoder.feature_info.reduction()]
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if not channels or len(channels) != len(reductions):
            raise ValueError("encoder.feature_info needs one channel count per reduction")
        for r in reductions:
            exact_log2(r)  # raises unless a power of two
        if reductions != sorted(reductions):
            raise ValueError(f"encoder reductions must ascend, got {reductions}")
        offsets = aligned_offsets(reductions) if offsets is None else list(offsets)
        if len(offsets) != len(reductions):
            raise ValueError("offsets needs one value per encoder level")
        self.grids = [(r, float(o)) for r, o in zip(reductions, offsets, strict=True)]
        last = exact_log2(output_stride)
        used = [i for i, r in enumerate(reductions) if r >= output_stride]
        if not used:
            raise ValueError(
                f"encoder's coarsest reduction {reductions[-1]} is finer than output_stride "
                f"{output_stride}"
            )
        self.encoder = encoder
        self.normalize = Normalize(tuple(mean), tuple(std))
        self.output_stride = output_stride
        self.out_channels = width
        self.pad_multiple = max(reductions[-1], output_stride)
        self.deepest = used[-1]
        self.project = conv_bn_relu(channels[self.deepest], width)
        # fuse[k] merges level fuse_levels[k]; levels go from deep to shallow.
        self.fuse_levels = list(reversed(used[:-1]))
        self.fuse = nn.ModuleList(conv_bn_relu(width + channels[i], width)
                                  for i in self.fuse_levels)
        extra = exact_log2(reductions[used[0]]) - last
        self.refine = nn.ModuleList(conv_bn_relu(width, width) for _ in range(extra))

    def forward(self, images: Tensor) -> Tensor:
        x = self.normalize(images)
        height, width = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        x = F.pad(x, [0, (m - width % m) % m, 0, (m - height % m) % m])
        features: list[Tensor] = self.encoder(x)
        x = self.project(features[self.deepest])
        grid = self.grids[self.deepest]
        for k, block in enumerate(self.fuse):
            skip = features[self.fuse_levels[k]]
            x = resample(x, skip.shape[-2:], grid, self.grids[self.fuse_levels[k]])
            grid = self.grids[self.fuse_levels[k]]
            x = block(torch.cat([x, skip], dim=1))
        for block in self.refine:
            finer = (grid[0] // 2, (grid[0] // 2 - 1) / 2)
            x = block(resample(x, (x.shape[-2] * 2, x.shape[-1] * 2), grid, finer))
            grid = finer
        s = self.output_stride
        x = resample(x, x.shape[-2:], grid, (s, (s - 1) / 2))  # onto the targets' grid
        return x[:, :, : (height + s - 1) // s, : (width + s - 1) // s]


def resample(x: Tensor, size: Sequence[int], source: tuple[int, float],
             target: tuple[int, float]) -> Tensor:
    """Bilinear resampling between grids on the input: cell j of a grid (r, o) sits on input
    pixel ``r * j + o``; values beyond the edge repeat the edge.

    Args:
        x: (B, C, h, w) on the `source` grid.
        size: (H, W) of the `target` grid.

    Returns:
        (B, C, H, W) on the `target` grid.
    """
    (r_in, o_in), (r_out, o_out) = source, target
    if o_in == (r_in - 1) / 2 and o_out == (r_out - 1) / 2:
        if tuple(size) == tuple(x.shape[-2:]):
            return x
        # Both centred as the targets are: plain bilinear resizing is exactly this (and faster).
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def axis(cells_out: int, cells_in: int) -> Tensor:
        position = (torch.arange(cells_out, dtype=x.dtype, device=x.device) * r_out
                    + (o_out - o_in)) / r_in  # in source cells
        return position * (2 / max(cells_in - 1, 1)) - 1  # grid_sample's align_corners=True

    gy, gx = torch.meshgrid(axis(size[0], x.shape[-2]), axis(size[1], x.shape[-1]),
                            indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def create_timm_backbone(
    encoder_name: str, width: int = 32, output_stride: int = 1, pretrained: bool = False
) -> EncoderDecoder:
    """``timm.create_model(encoder_name, features_only=True)`` wrapped in :class:`EncoderDecoder`.

    The input normalisation is the encoder's own ``pretrained_cfg`` mean and std.

    Args:
        encoder_name: A timm model name, e.g. ``resnet18``, ``convnext_nano``.
        width: Decoder channels.
        output_stride: 1, 2, 4 or 8.
        pretrained: Download timm's pretrained weights (needs internet or timm's cache).

    Raises:
        InputError: timm is not installed, the name is unknown (naming the closest one), or
            timm can't build it as a feature extractor (or can't fetch its weights).
    """
    backbone = f"timm:{encoder_name}"
    try:
        import timm
    except ImportError as exc:
        raise InputError(
            f"model.backbone {backbone!r} needs timm, which did not import: reinstall the "
            "project with a matching torch / torchvision pair (see the README's installing notes)"
        ) from exc
    if not timm.is_model(encoder_name):
        close = difflib.get_close_matches(encoder_name, timm.list_models(), n=1)
        hint = f"; did you mean 'timm:{close[0]}'?" if close else ""
        raise InputError(f"model.backbone: unknown timm model {encoder_name!r}{hint}")
    try:
        encoder = timm.create_model(encoder_name, features_only=True, pretrained=pretrained)
    except Exception as exc:  # timm raises assorted types (no feature support, failed download)
        raise InputError(
            f"model.backbone {backbone!r}: timm could not create it with features_only=True"
            f"{' and pretrained weights' if pretrained else ''}: {first_line(exc)}"
        ) from exc
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    reductions = tuple(int(r) for r in encoder.feature_info.reduction())
    return EncoderDecoder(
        encoder,
        width=width,
        output_stride=output_stride,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        offsets=encoder_offsets(encoder_name, encoder, reductions),
    )


_OFFSETS: dict[str, tuple[float, ...] | None] = {}


def encoder_offsets(name: str, encoder: nn.Module, reductions: Sequence[int]
                    ) -> tuple[float, ...] | None:
    """Where the named encoder's cells sit (measured once per name and process, about a
    second); None when the probe cannot tell, and the decoder then assumes centred cells."""
    if name not in _OFFSETS:
        measured = measure_offsets(encoder, reductions)
        _OFFSETS[name] = None if measured is None else tuple(measured)
    return _OFFSETS[name]
