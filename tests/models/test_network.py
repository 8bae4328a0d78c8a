"""HeatmapHead's prior, KeypointNet built from config, and exporting it."""

from __future__ import annotations

import io
import math

import pytest
import torch

from kp_platform.config.schema import HeatmapConfig, ModelConfig
from kp_platform.models import HeatmapHead, KeypointNet, build_network

H, W = 37, 50
# torch 2.13 deprecates TorchScript; exporting through it is still what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.mark.parametrize("prior", [0.01, 0.1, 0.5])
def test_head_starts_at_the_prior(prior: float) -> None:
    head = HeatmapHead(in_channels=6, num_channels=3, prior=prior)
    assert head.logits.bias.tolist() == pytest.approx([math.log(prior / (1 - prior))] * 3)
    probs = torch.sigmoid(head(torch.zeros(2, 6, 5, 7)))
    assert probs.shape == (2, 3, 5, 7)
    assert (probs - prior).abs().max() < 1e-3
    # Tiny final weights keep it near the prior for ordinary features too.
    probs = torch.sigmoid(head(torch.randn(2, 6, 5, 7)))
    assert (probs - prior).abs().max() < 1e-2


def test_head_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prior"):
        HeatmapHead(4, 2, prior=1.0)
    with pytest.raises(ValueError, match="channels"):
        HeatmapHead(4, 0)


@pytest.mark.parametrize("backbone", ["unet_tiny", "dilated_cnn_tiny"])
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_build_network_reads_model_and_heatmap(backbone: str, stride: int) -> None:
    net = build_network(ModelConfig(backbone=backbone, head_prior=0.05),
                        HeatmapConfig(stride=stride), num_channels=3)
    assert isinstance(net, KeypointNet) and net.output_stride == stride
    logits = net(torch.rand(2, 3, H, W))
    assert logits.shape == (2, 3, math.ceil(H / stride), math.ceil(W / stride))
    assert (torch.sigmoid(logits) - 0.05).abs().max() < 1e-2


def tiny_net(stride: int = 2) -> KeypointNet:
    torch.manual_seed(0)
    return build_network(ModelConfig(backbone="unet_tiny"), HeatmapConfig(stride=stride), 3).eval()


def test_trace_matches_eager_and_generalises_to_other_sizes() -> None:
    net = tiny_net()
    images = torch.rand(2, 3, H, W)
    traced = torch.jit.trace(net, images)
    torch.testing.assert_close(traced(images), net(images), atol=1e-5, rtol=0)
    # Padding and cropping are computed from traced shapes, not baked-in constants.
    other = torch.rand(1, 3, 29, 41)
    torch.testing.assert_close(traced(other), net(other), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backbone", ["unet_tiny", "dilated_cnn_tiny"])
def test_script_matches_eager(backbone: str) -> None:
    net = build_network(ModelConfig(backbone=backbone), HeatmapConfig(stride=2), 2).eval()
    scripted = torch.jit.script(net)
    images = torch.rand(1, 3, H, W)
    torch.testing.assert_close(scripted(images), net(images), atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside torch.export, not here
def test_onnx_export() -> None:
    pytest.importorskip("onnxscript")  # torch.onnx.export's default (dynamo) exporter needs it
    net = tiny_net()
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"),
            3: torch.export.Dim("width")}
    program = torch.onnx.export(net.exportable(), (torch.rand(1, 3, H, W),),
                                dynamic_shapes={"images": dims})
    buffer = io.BytesIO()
    program.save(buffer)
    assert buffer.getvalue()


def test_channels_last_changes_the_layout_not_the_function() -> None:
    net = tiny_net()
    images = torch.rand(2, 3, H, W)
    out = net(images)
    assert out.is_contiguous(memory_format=torch.channels_last)
    nchw = net.exportable()
    assert nchw(images).is_contiguous() and torch.allclose(nchw(images), out, atol=1e-5)
