"""EncoderDecoder with a stand-in encoder (always), and real timm encoders (where installed)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kp_platform.config.schema import ModelConfig
from kp_platform.errors import InputError
from kp_platform.models import timm_backbone
from kp_platform.models.backbones import build_backbone, create_backbone
from kp_platform.models.timm_backbone import EncoderDecoder

H, W = 37, 50


class FeatureInfo:
    """timm's feature_info interface: per-level channels and reductions."""

    def __init__(self, channels: list[int], reductions: list[int]) -> None:
        self._channels, self._reductions = channels, reductions

    def channels(self) -> list[int]:
        return list(self._channels)

    def reduction(self) -> list[int]:
        return list(self._reductions)


class StandInEncoder(nn.Module):
    """A features_only-style encoder: one strided conv per level, returns every level.

    Like convnext, its first level is a non-overlapping patchify conv (floor sizes), so the
    decoder must pad the input to get consistent level sizes.
    """

    def __init__(self, channels: list[int], reductions: list[int]) -> None:
        super().__init__()
        self.feature_info = FeatureInfo(channels, reductions)
        layers, previous, in_channels = [], 1, 3
        for c, r in zip(channels, reductions, strict=True):
            step = r // previous
            layers.append(nn.Conv2d(in_channels, c, step, stride=step))
            previous, in_channels = r, c
        self.levels = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = F.relu(level(x))
            features.append(x)
        return features


def stand_in(reductions: tuple[int, ...] = (2, 4, 8, 16)) -> StandInEncoder:
    return StandInEncoder([3 + i for i in range(len(reductions))], list(reductions))


@pytest.mark.parametrize("reductions", [(2, 4, 8, 16), (4, 8, 16, 32), (1, 2, 4, 8)])
@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_decoder_reaches_the_output_stride(reductions: tuple[int, ...], stride: int) -> None:
    backbone = EncoderDecoder(stand_in(reductions), width=5, output_stride=stride)
    out = backbone(torch.rand(2, 3, H, W))
    assert backbone.out_channels == 5 and backbone.output_stride == stride
    assert out.shape == (2, 5, math.ceil(H / stride), math.ceil(W / stride))


def test_decoder_skips_levels_finer_than_the_output_stride() -> None:
    backbone = EncoderDecoder(stand_in((2, 4, 8, 16)), width=5, output_stride=4)
    assert backbone.fuse_levels == [2, 1] and len(backbone.refine) == 0
    convnext_like = EncoderDecoder(stand_in((4, 8, 16, 32)), width=5, output_stride=1)
    assert convnext_like.fuse_levels == [2, 1, 0] and len(convnext_like.refine) == 2


def test_decoder_normalises_with_the_given_statistics() -> None:
    backbone = EncoderDecoder(stand_in(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    buffers = dict(backbone.named_buffers())
    assert torch.equal(buffers["normalize.mean"].flatten(), torch.full((3,), 0.5))
    assert torch.equal(buffers["normalize.std"].flatten(), torch.full((3,), 0.25))


def test_decoder_rejects_unusable_encoders() -> None:
    with pytest.raises(ValueError, match="finer than output_stride"):
        EncoderDecoder(stand_in((1, 2)), output_stride=4)
    with pytest.raises(ValueError, match="power of two"):
        EncoderDecoder(StandInEncoder([3], [3]))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_trace_matches_eager() -> None:
    backbone = EncoderDecoder(stand_in((4, 8, 16, 32)), width=4, output_stride=2).eval()
    images = torch.rand(1, 3, H, W)
    traced = torch.jit.trace(backbone, images)
    torch.testing.assert_close(traced(images), backbone(images), atol=1e-5, rtol=0)


@pytest.fixture
def fake_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes `timm:<anything>` build an EncoderDecoder over the stand-in encoder."""

    def create(encoder_name: str, width: int = 32, output_stride: int = 1,
               pretrained: bool = False) -> EncoderDecoder:
        torch.manual_seed(len(encoder_name))
        return EncoderDecoder(stand_in(), width=width, output_stride=output_stride)

    monkeypatch.setattr(timm_backbone, "create_timm_backbone", create)


@pytest.mark.usefixtures("fake_timm")
def test_pretrained_path_loads_the_encoder_only(tmp_path: Path) -> None:
    source = build_backbone(ModelConfig(backbone="timm:a", width=4), output_stride=2)
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.state_dict(), path)
    cfg = ModelConfig(backbone="timm:longer_name", width=4, pretrained_path=str(path))
    loaded = build_backbone(cfg, output_stride=2)
    for a, b in zip(source.encoder.parameters(), loaded.encoder.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(source.project[0].weight, loaded.project[0].weight)


@pytest.mark.usefixtures("fake_timm")
def test_pretrained_path_refuses_a_whole_backbone_state_dict(tmp_path: Path) -> None:
    source = build_backbone(ModelConfig(backbone="timm:a", width=4), output_stride=2)
    path = tmp_path / "whole.pt"
    torch.save(source.state_dict(), path)  # encoder.* prefixes: not an encoder state dict
    with pytest.raises(InputError, match=r"whole\.pt.*keys don't match"):
        build_backbone(ModelConfig(backbone="timm:a", pretrained_path=str(path)), 2)
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)
    with pytest.raises(InputError, match=r"evil\.pt"):
        build_backbone(ModelConfig(backbone="timm:a", pretrained_path=str(evil)), 2)


@pytest.mark.usefixtures("fake_timm")
def test_pretrained_flag_and_path_together_are_refused(tmp_path: Path) -> None:
    cfg = ModelConfig(backbone="timm:a", pretrained=True, pretrained_path=str(tmp_path / "w.pt"))
    with pytest.raises(InputError, match="not both"):
        build_backbone(cfg, output_stride=1)


def test_a_broken_timm_install_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    expected = r"'timm:resnet18' needs timm, which did not import: reinstall the project"
    with pytest.raises(InputError, match=expected):
        build_backbone(ModelConfig(backbone="timm:resnet18"), output_stride=4)


# ---- real timm encoders: run wherever timm is installed -------------------------------------


@pytest.mark.parametrize("encoder", ["resnet18", "convnext_nano", "mobilenetv3_small_100"])
@pytest.mark.parametrize("stride", [1, 4])
def test_timm_encoders(encoder: str, stride: int) -> None:
    import timm
    backbone = build_backbone(ModelConfig(backbone=f"timm:{encoder}", width=8), stride).eval()
    out = backbone(torch.rand(1, 3, H, W))
    assert out.shape == (1, 8, math.ceil(H / stride), math.ceil(W / stride))
    expected_mean = timm.create_model(encoder, features_only=True).pretrained_cfg["mean"]
    assert torch.allclose(backbone.normalize.mean.flatten(), torch.tensor(expected_mean))


def test_timm_pretrained_path_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_backbone("timm:resnet18", width=4, output_stride=4)
    path = tmp_path / "resnet18.pt"
    torch.save(source.encoder.state_dict(), path)
    torch.manual_seed(1)
    cfg = ModelConfig(backbone="timm:resnet18", width=4, pretrained_path=str(path))
    loaded = build_backbone(cfg, output_stride=4)
    for a, b in zip(source.encoder.parameters(), loaded.encoder.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.save(create_backbone("timm:resnet34", width=4).encoder.state_dict(), path)
    with pytest.raises(InputError, match=r"resnet18\.pt.*keys don't match"):
        build_backbone(cfg, output_stride=4)


def test_timm_unknown_encoder_names_the_closest() -> None:
    with pytest.raises(InputError, match=r"unknown timm model 'resnet81'.*did you mean"):
        build_backbone(ModelConfig(backbone="timm:resnet81"), output_stride=1)


@pytest.mark.parametrize("source, target", [((4, 0.0), (1, 0.0)), ((8, 0.0), (2, 0.5)),
                                            ((4, 1.5), (2, 0.5)), ((2, 0.0), (2, 0.5))])
def test_resampling_puts_each_cell_where_its_grid_says(source, target) -> None:
    # A map whose value is where its cell sits on the input: resampled, it must still be.
    (r_in, o_in), (r_out, o_out) = source, target
    cells_in, cells_out = 64 // r_in, 64 // r_out
    positions = torch.arange(cells_in, dtype=torch.float64) * r_in + o_in
    x = positions.view(1, 1, 1, -1).expand(1, 1, cells_in, cells_in).contiguous()
    out = timm_backbone.resample(x, (cells_out, cells_out), source, target)
    expected = torch.arange(cells_out, dtype=torch.float64) * r_out + o_out
    inside = (expected >= positions[0]) & (expected <= positions[-1])  # beyond: the edge value
    torch.testing.assert_close(out[0, 0, 5][inside], expected[inside])
