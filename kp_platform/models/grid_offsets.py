"""Where an encoder's feature cells sit on the input: measured with a linear probe.

Heatmap targets put cell j of a stride-r grid on input pixel ``r * j + (r - 1) / 2``, the
centre of the r pixels it covers. A ResNet's "same"-padded stride-2 layers instead centre level
r's cell j on ``r * j``: (r - 1) / 2 pixels early, 15.5 px at the stride-32 level. A decoder
that upsamples as if every level were centred breaks sub-pixel accuracy, so
`EncoderDecoder` resamples each level from where its cells really are; this module measures
that, once per encoder, on a linear copy of it.

The probe: convolutions average (positive weights summing to 1, no bias), normalisations and
activations are the identity, max-pools are average pools. Every layer is then linear and
position-equivariant, and a cell's value on the ramp image ``x`` divided by its value on a
constant image is the centroid of its impulse response: the input column it is centred on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from kp_platform.models.layers import Normalize

PROBE_WIDTH = 384
"""Columns of the probe image: the middle cells of a stride-32 level stay ~200 px from its
borders, beyond what zero padding would pull on."""
PROBE_HEIGHT = 32
TOLERANCE = 0.05
"""Offsets of neighbouring middle cells must agree to this (px), or the probe is not trusted."""


def linear_probe(module: nn.Module) -> nn.Module:
    """A copy of `module` in which every layer is linear and averages (see above).

    Functional activations and pools inside `forward` (``F.relu``) are not replaced; callers
    that need them linear must patch them.
    """
    probe = copy.deepcopy(module).eval()
    for name, child in list(probe.named_modules()):
        if isinstance(child, nn.Conv2d | nn.Linear):
            nn.init.constant_(child.weight, 1.0 / child.weight[0].numel())
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, Normalize):
            child.mean.zero_()
            child.std.fill_(1.0)
        elif isinstance(child, nn.BatchNorm2d):
            child.reset_running_stats()
            child.eps = 0.0
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
        replacement = _linear_replacement(child)
        if replacement is not None and name:
            parent_name, _, attribute = name.rpartition(".")
            setattr(probe.get_submodule(parent_name) if parent_name else probe, attribute,
                    replacement)
    with torch.no_grad():
        for name, param in probe.named_parameters():
            if name.endswith("gamma"):  # layer scales (timm's convnext)
                param.fill_(1.0)
    return probe


def _linear_replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.MaxPool2d):
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                            ceil_mode=module.ceil_mode)
    if isinstance(module, nn.ReLU | nn.GELU | nn.SiLU | nn.LayerNorm | nn.Hardswish):
        return nn.Identity()
    if type(module).__name__.startswith("LayerNorm"):  # timm's LayerNorm2d
        return nn.Identity()
    return None


def aligned_offsets(reductions: Sequence[int]) -> list[float]:
    """The targets' convention: a stride-r cell centred on ``r * j + (r - 1) / 2``."""
    return [(r - 1) / 2 for r in reductions]


def measure_offsets(encoder: nn.Module, reductions: Sequence[int]) -> list[float] | None:
    """Per level, where cell j sits: ``r * j + offset`` (input pixels, along x).

    Args:
        encoder: A feature extractor: (B, 3, H, W) → one map per level, shallow to deep.
        reductions: Each level's stride.

    Returns:
        One offset per level, rounded to 1/16 px; None when the probe cannot be trusted (a
        layer it cannot make linear, or middle cells that disagree).
    """
    probe = linear_probe(encoder)
    columns = torch.arange(PROBE_WIDTH, dtype=torch.float32)
    ramp = columns.view(1, 1, 1, -1).expand(1, 3, PROBE_HEIGHT, PROBE_WIDTH)
    ones = torch.ones(1, 3, PROBE_HEIGHT, PROBE_WIDTH, dtype=torch.float32)
    try:
        with torch.no_grad():
            on_ramp, on_ones = probe(ramp.contiguous()), probe(ones)
    except RuntimeError:
        return None
    offsets = []
    for level, r in enumerate(reductions):
        weight = on_ones[level].mean(dim=1)[0]
        centres = on_ramp[level].mean(dim=1)[0] / weight
        row = centres[centres.shape[0] // 2]
        middle = row.shape[0] // 2
        found = [float(row[j]) - r * j for j in (middle - 1, middle)]
        if not all(abs(v) < r for v in found) or abs(found[0] - found[1]) > TOLERANCE:
            return None
        offsets.append(round(sum(found) / 2 * 16) / 16)
    return offsets
