"""The backbone registry and the from-scratch backbones (`unet`, `dilated_cnn` and tiny variants).

A backbone is an ``nn.Module`` with ``out_channels: int`` and ``output_stride: int`` attributes
that maps (B, 3, H, W) float images in [0, 1] to features (B, out_channels, ceil(H / s),
ceil(W / s)), s = ``output_stride``, for any H and W. It normalises its input itself, so
callers always feed [0, 1] images.

Adding a backbone: write a factory function that returns such a module and decorate it::

    @register_backbone                 # registry key "my_net"; or @register_backbone("other")
    def my_net(width: int = 32, depth: int = 4, output_stride: int = 1) -> nn.Module:
        return MyNet(width=width, depth=depth, output_stride=output_stride)

The factory must accept ``output_stride``; it may accept ``width`` and ``depth``, and
:func:`build_backbone` passes ``model.width`` / ``model.depth`` only to factories that declare
them (fixed-size test variants such as ``unet_tiny`` don't). Then ``model.backbone=my_net``
selects it. ``timm:<encoder>`` names are not in the registry: they go to
:mod:`kp_platform.models.timm_backbone`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kp_platform.config.schema import AUTO, ModelConfig
from kp_platform.errors import InputError, first_line
from kp_platform.models.layers import (
    Normalize,
    conv_bn_relu,
    double_conv,
    exact_log2,
)

OUTPUT_STRIDES = (1, 2, 4, 8)
TIMM_PREFIX = "timm:"

BackboneFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=BackboneFactory)
_BACKBONES: dict[str, BackboneFactory] = {}


@overload
def register_backbone(factory: _F) -> _F: ...
@overload
def register_backbone(factory: str | None = None) -> Callable[[_F], _F]: ...
def register_backbone(factory: _F | str | None = None) -> _F | Callable[[_F], _F]:
    """Registers a backbone factory under its function name, or under an explicit name.

    Use as ``@register_backbone`` or ``@register_backbone("name")``.

    Raises:
        ValueError: The name is taken or uses the reserved ``timm:`` prefix.
    """
    name = factory if isinstance(factory, str) else None

    def add(fn: _F) -> _F:
        key = name or fn.__name__
        if key.startswith(TIMM_PREFIX):
            raise ValueError(f"backbone names starting with {TIMM_PREFIX!r} are reserved")
        if key in _BACKBONES:
            raise ValueError(f"backbone {key!r} is already registered")
        _BACKBONES[key] = fn
        return fn

    if factory is None or isinstance(factory, str):
        return add
    return add(factory)


def list_backbones() -> list[str]:
    """The registered backbone names, sorted (``timm:<encoder>`` names come on top of these)."""
    return sorted(_BACKBONES)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Builds a backbone by name: a registered one, or ``timm:<encoder>``.

    Args:
        name: A registry key or ``timm:<encoder>``.
        **kwargs: Passed to the factory (e.g. ``width``, ``depth``, ``output_stride``; for timm
            names those of :func:`~kp_platform.models.timm_backbone.create_timm_backbone`).

    Raises:
        InputError: Unknown name (naming the closest registered one), or timm is missing.
    """
    if name.startswith(TIMM_PREFIX):
        # Imported here: timm_backbone imports this module (and timm itself only on demand).
        from kp_platform.models.timm_backbone import create_timm_backbone

        return create_timm_backbone(name[len(TIMM_PREFIX) :], **kwargs)
    factory = _BACKBONES.get(name)
    if factory is None:
        close = difflib.get_close_matches(name, _BACKBONES, n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"unknown backbone {name!r}{hint} Registered: {', '.join(list_backbones())}, "
            f"or {TIMM_PREFIX}<encoder>"
        )
    return factory(**kwargs)


def build_backbone(model_cfg: ModelConfig, output_stride: int) -> nn.Module:
    """Builds ``model_cfg.backbone`` and loads ``model_cfg.pretrained_path`` if set.

    Reads ``model.backbone``, ``model.width``, ``model.depth`` (from-scratch backbones that
    declare them), ``model.pretrained`` (timm only) and ``model.pretrained_path`` (a state dict
    for the timm encoder, or for the whole from-scratch backbone).

    Args:
        model_cfg: The ``model`` config section.
        output_stride: Input pixels per output cell (``heatmap.stride``): 1, 2, 4 or 8.

    Raises:
        InputError: Unknown backbone, missing timm, contradictory or unloadable weights.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise InputError(f"must be one of {OUTPUT_STRIDES}, got {output_stride}", "heatmap.stride")
    name = model_cfg.backbone
    path = model_cfg.pretrained_path
    if name.startswith(TIMM_PREFIX):
        if model_cfg.pretrained and path:
            # Downloading weights that the local file then overwrites would only cost time.
            raise InputError(
                "set model.pretrained or model.pretrained_path, not both", "model.pretrained"
            )
        backbone = create_backbone(
            name,
            width=model_cfg.width,
            output_stride=output_stride,
            pretrained=model_cfg.pretrained,
        )
        if path:
            load_weights(backbone.encoder, path)
        return backbone
    if model_cfg.pretrained:
        raise InputError(
            f"backbone {name!r} has no downloadable weights (only timm:<encoder> backbones do); "
            "use model.pretrained_path for a local state dict",
            "model.pretrained",
        )
    factory = _BACKBONES.get(name)
    accepted = set(inspect.signature(factory).parameters) if factory else set()
    if "depth" in accepted and model_cfg.depth == AUTO:
        raise InputError("auto is resolved from the input size when a run starts "
                         "(config.auto.resolve_auto); build from a resolved config",
                         "model.depth")
    offered = {"width": model_cfg.width, "depth": model_cfg.depth,
               "max_width": model_cfg.max_width}
    kwargs = {key: value for key, value in offered.items() if key in accepted}
    backbone = create_backbone(name, output_stride=output_stride, **kwargs)
    if path:
        load_weights(backbone, path)
    return backbone


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Loads a state-dict file into ``module`` strictly, with ``weights_only=True``.

    Raises:
        InputError: Naming the file when it is missing, unreadable, not a plain state dict
            (weights-only unpickling refuses arbitrary objects), or its keys or shapes don't
            match the module.
    """
    source = str(path)
    if not Path(path).is_file():
        raise InputError("model.pretrained_path: file not found", source)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or non-weights files raise many types; all mean "unusable"
        raise InputError(
            f"model.pretrained_path: not a weights-only state dict ({first_line(exc)})",
            source,
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(
            "model.pretrained_path: expected a state dict (parameter name -> tensor), "
            f"got {type(state).__name__}",
            source,
        )
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise InputError(
            f"model.pretrained_path: keys don't match the {type(module).__name__} "
            f"({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})",
            source,
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # same keys but different shapes
        # Its first line only names the module; the second says which shape differs.
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])[:300]
        raise InputError(f"model.pretrained_path: {detail}", source) from exc


class UNet(nn.Module):
    """A from-scratch U-Net whose decoder stops at ``output_stride``.

    The encoder has ``max(depth, log2(output_stride))`` max-pool stages (stage i: ``width * 2**i``
    channels); the decoder upsamples bilinearly by 2, concatenates the skip and applies a double
    conv, until the resolution is 1 / output_stride. The input is zero-padded (after
    normalisation, i.e. with the mean colour) to a multiple of 2**stages and the output cropped.

    Args:
        width: Channels of the first stage.
        depth: Down-sampling stages.
        output_stride: 1, 2, 4 or 8.
        max_width: Channels stop doubling here (None: no limit). The deep stages are small
            feature maps, so capped they add receptive field at little cost.

    Shapes:
        (B, 3, H, W) in [0, 1] -> (B, min(width * output_stride, max_width), ceil(H / s),
        ceil(W / s)).
    """

    def __init__(self, width: int = 32, depth: int = 4, output_stride: int = 1,
                 max_width: int | None = None) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        last = exact_log2(output_stride)
        stages = max(depth, last)
        cap = max_width if max_width is not None else width * 2**stages
        channels = [min(width * 2**i, cap) for i in range(stages + 1)]
        self.output_stride = output_stride
        self.out_channels = channels[last]
        self.pad_multiple = 2**stages
        self.normalize = Normalize()
        self.down = nn.ModuleList(
            double_conv(3 if i == 0 else channels[i - 1], channels[i]) for i in range(stages + 1)
        )
        # up[k] brings stage (stages - k) to stage (stages - k - 1), fusing that stage's skip.
        self.up = nn.ModuleList(
            double_conv(channels[i] + channels[i + 1], channels[i])
            for i in reversed(range(last, stages))
        )

    def forward(self, images: Tensor) -> Tensor:
        x = self.normalize(images)
        height, width = x.shape[-2], x.shape[-1]
        m = self.pad_multiple
        x = F.pad(x, [0, (m - width % m) % m, 0, (m - height % m) % m])
        skips: list[Tensor] = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for k, block in enumerate(self.up):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([skips[len(skips) - 2 - k], x], dim=1))
        s = self.output_stride
        return x[:, :, : (height + s - 1) // s, : (width + s - 1) // s]


class DilatedBlock(nn.Module):
    """Residual block: two 3×3 convs with the same dilation, identity shortcut; keeps the size."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, dilation=dilation),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class Downsample(nn.Module):
    """A stride-2 4×4 conv-BN-ReLU whose output cell j is centred on input pixels 2j and 2j+1.

    Heatmap cell j at stride 2 covers input pixels [2j, 2j+2), centre 2j + 0.5. The usual
    3×3 / padding-1 stride-2 conv centres cell j on pixel 2j instead, a half-pixel bias per level
    that a network must learn to undo. An even kernel with one pixel of padding before and
    ``1 + size % 2`` after is centred where the targets are and gives ceil(size / 2) cells.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 4, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, [1, 1 + x.shape[-1] % 2, 1, 1 + x.shape[-2] % 2])
        return F.relu(self.bn(self.conv(x)))


class DilatedCNN(nn.Module):
    """A resolution-preserving stack of dilated residual blocks.

    The stem is one stride-1 conv-BN-ReLU, or log2(output_stride) :class:`Downsample` stages;
    then ``depth`` :class:`DilatedBlock` s with dilations cycling 1, 2, 4, 8, which grows the
    receptive field without losing resolution. Each stage gives ceil(size / 2), so no cropping
    is needed.

    Args:
        width: Channels throughout.
        depth: Number of residual blocks.
        output_stride: 1, 2, 4 or 8.

    Shapes:
        (B, 3, H, W) in [0, 1] -> (B, width, ceil(H / s), ceil(W / s)).
    """

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, width: int = 32, depth: int = 4, output_stride: int = 1) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        downs = exact_log2(output_stride)
        self.output_stride = output_stride
        self.out_channels = width
        self.normalize = Normalize()
        stem = [Downsample(3 if i == 0 else width, width) for i in range(downs)]
        self.stem = nn.Sequential(*(stem or [conv_bn_relu(3, width)]))
        self.blocks = nn.Sequential(
            *(DilatedBlock(width, self.DILATIONS[i % len(self.DILATIONS)]) for i in range(depth))
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.blocks(self.stem(self.normalize(images)))


@register_backbone
def unet(width: int = 32, depth: int = 4, output_stride: int = 1,
         max_width: int | None = None) -> UNet:
    """From-scratch U-Net; see :class:`UNet`."""
    return UNet(width=width, depth=depth, output_stride=output_stride, max_width=max_width)


@register_backbone
def unet_tiny(output_stride: int = 1) -> UNet:
    """A width-4, depth-2 U-Net for fast tests (ignores ``model.width`` / ``model.depth``)."""
    return UNet(width=4, depth=2, output_stride=output_stride)


@register_backbone
def dilated_cnn(width: int = 32, depth: int = 4, output_stride: int = 1) -> DilatedCNN:
    """Dilated residual CNN; see :class:`DilatedCNN`."""
    return DilatedCNN(width=width, depth=depth, output_stride=output_stride)


@register_backbone
def dilated_cnn_tiny(output_stride: int = 1) -> DilatedCNN:
    """A width-4, two-block dilated CNN for fast tests (ignores ``model.width`` / ``depth``)."""
    return DilatedCNN(width=4, depth=2, output_stride=output_stride)
