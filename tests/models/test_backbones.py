"""The backbone registry, the from-scratch backbones and loading local weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from kp_platform.config.schema import ModelConfig
from kp_platform.errors import InputError
from kp_platform.models import backbones
from kp_platform.models.backbones import (
    build_backbone,
    create_backbone,
    list_backbones,
    load_weights,
    register_backbone,
)
from kp_platform.models.layers import IMAGENET_MEAN, IMAGENET_STD

H, W = 37, 50  # deliberately not multiples of any power of two


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry, so test registrations vanish afterwards."""
    registry = dict(backbones._BACKBONES)
    monkeypatch.setattr(backbones, "_BACKBONES", registry)
    return registry


def test_registry_holds_the_builtin_backbones() -> None:
    assert {"unet", "unet_tiny", "dilated_cnn", "dilated_cnn_tiny"} <= set(list_backbones())


@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_every_backbone_keeps_ceil_size_at_its_output_stride(name: str, stride: int) -> None:
    torch.manual_seed(0)
    # Through the config path, narrow: full-width defaults would only make this slower.
    backbone = build_backbone(ModelConfig(backbone=name, width=4, depth=2), stride)
    features = backbone(torch.rand(2, 3, H, W))
    assert backbone.output_stride == stride
    assert features.shape == (2, backbone.out_channels, math.ceil(H / stride),
                              math.ceil(W / stride))
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", ["unet_tiny", "dilated_cnn_tiny"])
def test_stride_8_and_tiny_inputs(name: str) -> None:
    # eval(): BatchNorm can't train on a single 1x1 value per channel.
    backbone = create_backbone(name, output_stride=8).eval()
    assert backbone(torch.rand(1, 3, 9, 5)).shape[-2:] == (2, 1)
    assert create_backbone(name).eval()(torch.rand(1, 3, 1, 1)).shape[-2:] == (1, 1)


@pytest.mark.parametrize("name", list_backbones())
def test_backbones_normalise_with_imagenet_buffers(name: str) -> None:
    backbone = create_backbone(name, output_stride=1)
    buffers = dict(backbone.named_buffers())
    assert torch.allclose(buffers["normalize.mean"].flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(buffers["normalize.std"].flatten(), torch.tensor(IMAGENET_STD))
    image = torch.rand(1, 3, 4, 4)
    expected = (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(1, 3, 1, 1)
    assert torch.allclose(backbone.normalize(image), expected)


def test_build_backbone_passes_width_and_depth() -> None:
    unet = build_backbone(ModelConfig(backbone="unet", width=4, depth=3), output_stride=2)
    assert unet.out_channels == 8 and len(unet.down) == 4
    dilated = build_backbone(ModelConfig(backbone="dilated_cnn", width=6, depth=5), 4)
    assert dilated.out_channels == 6 and len(dilated.blocks) == 5
    # Fixed-size variants don't declare width/depth, so the config's values don't reach them.
    tiny = build_backbone(ModelConfig(backbone="unet_tiny", width=64, depth=6), 1)
    assert tiny.out_channels == 4 and len(tiny.down) == 3


def test_unet_channels_stop_doubling_at_max_width() -> None:
    capped = build_backbone(ModelConfig(backbone="unet", width=8, depth=5, max_width=32), 2)
    widths = [block[-1][0].out_channels for block in capped.down]
    assert widths == [8, 16, 32, 32, 32, 32] and capped.out_channels == 16
    assert capped(torch.rand(1, 3, H, W)).shape[1] == 16
    free = build_backbone(ModelConfig(backbone="unet", width=8, depth=5, max_width=None), 2)
    assert [block[-1][0].out_channels for block in free.down] == [8, 16, 32, 64, 128, 256]


def test_an_unresolved_auto_depth_is_refused() -> None:
    with pytest.raises(InputError, match="model.depth"):
        build_backbone(ModelConfig(backbone="unet"), output_stride=2)  # depth: auto


def test_unet_deepens_when_the_stride_exceeds_its_depth() -> None:
    unet = build_backbone(ModelConfig(backbone="unet", width=2, depth=1), output_stride=8)
    assert unet.out_channels == 16
    assert unet(torch.rand(1, 3, H, W)).shape == (1, 16, 5, 7)


def test_dilations_cycle() -> None:
    dilated = create_backbone("dilated_cnn", width=2, depth=6)
    dilations = [block.body[1].dilation[0] for block in dilated.blocks]
    assert dilations == [1, 2, 4, 8, 1, 2]


def test_dilated_stem_is_strided_only_for_output_stride_above_1() -> None:
    def strides(model: nn.Module) -> list[int]:
        return [m.stride[0] for m in model.stem.modules() if isinstance(m, nn.Conv2d)]

    assert strides(create_backbone("dilated_cnn_tiny", output_stride=1)) == [1]
    assert strides(create_backbone("dilated_cnn_tiny", output_stride=4)) == [2, 2]


def test_unknown_backbone_names_the_closest_one() -> None:
    with pytest.raises(InputError, match=r"unknown backbone 'unte'.*did you mean 'unet'"):
        create_backbone("unte")
    with pytest.raises(InputError, match="'dilated_cnn'"):
        build_backbone(ModelConfig(backbone="dilated"), output_stride=1)


def test_register_by_function_name_or_explicit_name(scratch_registry: dict) -> None:
    @register_backbone
    def my_net(output_stride: int = 1) -> nn.Module:
        return backbones.DilatedCNN(width=2, depth=1, output_stride=output_stride)

    @register_backbone("other_net")
    def factory(width: int = 3, output_stride: int = 1) -> nn.Module:
        return backbones.DilatedCNN(width=width, depth=1, output_stride=output_stride)

    assert scratch_registry["my_net"] is my_net and scratch_registry["other_net"] is factory
    assert "factory" not in scratch_registry
    assert create_backbone("my_net", output_stride=2).output_stride == 2
    built = build_backbone(ModelConfig(backbone="other_net", width=5), output_stride=1)
    assert built.out_channels == 5
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("my_net")(my_net)
    with pytest.raises(ValueError, match="reserved"):
        register_backbone("timm:x")(my_net)


def test_bad_output_stride_is_an_input_error() -> None:
    with pytest.raises(InputError, match="heatmap.stride"):
        build_backbone(ModelConfig(backbone="unet_tiny"), output_stride=3)


def test_pretrained_flag_needs_a_timm_backbone() -> None:
    with pytest.raises(InputError, match="model.pretrained"):
        build_backbone(ModelConfig(backbone="unet_tiny", pretrained=True), output_stride=1)


@pytest.mark.parametrize("name", ["unet", "dilated_cnn"])
def test_pretrained_path_loads_the_whole_backbone(name: str, tmp_path: Path) -> None:
    cfg = ModelConfig(backbone=name, width=3, depth=2)
    torch.manual_seed(1)
    source = build_backbone(cfg, output_stride=2)
    with torch.no_grad():
        for buffer in source.buffers():  # BN statistics too, not just parameters
            buffer.add_(1)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    cfg.pretrained_path = str(path)
    loaded = build_backbone(cfg, output_stride=2)
    fresh = build_backbone(ModelConfig(backbone=name, width=3, depth=2), output_stride=2)
    for (key, value), expected in zip(loaded.state_dict().items(), source.state_dict().values(),
                                      strict=True):
        assert torch.equal(value, expected), key
    assert not all(torch.equal(a, b) for a, b in zip(fresh.parameters(), loaded.parameters(),
                                                      strict=True))


def test_pretrained_path_refuses_mismatched_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(create_backbone("dilated_cnn_tiny").state_dict(), path)
    cfg = ModelConfig(backbone="unet_tiny", pretrained_path=str(path))
    with pytest.raises(InputError, match=r"other\.pt.*keys don't match"):
        build_backbone(cfg, output_stride=1)


def test_pretrained_path_refuses_mismatched_shapes(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(create_backbone("dilated_cnn", width=5, depth=2).state_dict(), path)
    cfg = ModelConfig(backbone="dilated_cnn", width=4, depth=2, pretrained_path=str(path))
    with pytest.raises(InputError, match=r"wide\.pt.*size mismatch"):
        build_backbone(cfg, output_stride=1)


class Payload:
    """Pickled by reference; weights-only loading must refuse to import it."""


@pytest.mark.parametrize("payload", [{"x": object()}, Payload()], ids=["object", "instance"])
def test_pretrained_path_refuses_pickled_objects(payload: object, tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"evil\.pt.*weights-only"):
        load_weights(create_backbone("unet_tiny"), path)


def test_pretrained_path_refuses_non_state_dicts_and_missing_files(tmp_path: Path) -> None:
    module = create_backbone("unet_tiny")
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match=r"list\.pt.*expected a state dict"):
        load_weights(module, path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match=r"garbage\.pt"):
        load_weights(module, garbage)
    with pytest.raises(InputError, match=r"missing\.pt.*file not found"):
        build_backbone(ModelConfig(backbone="unet_tiny",
                                   pretrained_path=str(tmp_path / "missing.pt")), 1)
