"""`kp export`: the network as TorchScript or ONNX, producing heatmaps in [0, 1].

The exported graph takes (B, 3, H, W) float RGB in [0, 1] at the checkpoint's input size (the
normalisation is inside) and returns (B, C, H/s, W/s) heatmaps; resizing the input and decoding
the peaks stay with the caller (see `Detector`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from kp_platform.errors import InputError
from kp_platform.models.module import KeypointModule

FORMATS = ("onnx", "torchscript")


class HeatmapModel(nn.Module):
    """The network followed by a sigmoid: what an exported file computes."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) in [0, 1] → heatmaps (B, C, H/s, W/s) in [0, 1]."""
        return torch.sigmoid(self.network(images))


def export_model(module: KeypointModule, fmt: str, out: str | Path) -> Path:
    """Writes the module's network as `fmt` to `out` and returns the path.

    Raises:
        InputError: an unknown format, or ONNX without its packages installed.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose from {FORMATS}", "--format")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = HeatmapModel(module.network).eval()
    height, width = module.cfg.data.input_size
    example = torch.rand(1, 3, height, width)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        traced.save(str(out))
        return out
    try:
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
    except ImportError:
        raise InputError(
            "ONNX export needs: pip install 'kp_platform[export]'", "--format"
        ) from None
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["images"],
        output_names=["heatmaps"],
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    return out
