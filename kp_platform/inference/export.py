"""`kp export`: the network as TorchScript or ONNX, with or without the peak decoding.

The exported graph takes (B, 3, h, w) float RGB in [0, 1] at the checkpoint's input size (the
normalisation is inside) and returns (B, C, h/s, w/s) heatmaps; with the decoding
(`DecodingModel`) it returns instead, per image and channel, the top-k keypoints (x, y, score)
in the pixels of an original image of a fixed size. Resizing that image to the input
(`kp_platform.data.resize.resize_image`) stays with the caller. ONNX files carry the channel
names and sizes as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from kp_platform.data.resize import resize_image
from kp_platform.errors import InputError
from kp_platform.inference.graph_decoding import DecodingModel
from kp_platform.inference.settings import DecodeOptions
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


def build_export_model(
    module: KeypointModule, with_decoding: bool = False,
    image_size: tuple[int, int] | None = None,
) -> nn.Module:
    """What an exported file computes: `HeatmapModel`, or `DecodingModel` with the decoding.

    Args:
        module: The trained module.
        with_decoding: Return keypoints in original-image pixels instead of heatmaps.
        image_size: (height, width) of the original images the keypoints refer to; default
            the network input size (no resizing).
    """
    network = module.network.exportable()
    if not with_decoding:
        return HeatmapModel(network).eval()
    data = module.cfg.data
    input_size = (int(data.input_size[0]), int(data.input_size[1]))
    image_size = tuple(image_size or input_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise InputError(f"image size must be two positive sizes, got {image_size}",
                         "--image-size")
    blank = np.zeros((*image_size, 3), dtype=np.uint8)
    affine = resize_image(blank, input_size, data.resize_mode)[1]
    options = DecodeOptions.from_config(module.cfg)
    return DecodingModel(network, input_size,
                         (affine.sx, affine.sy, affine.tx, affine.ty), options.nms_radius,
                         options.score_threshold, options.top_k, options.stride).eval()


def export_model(
    module: KeypointModule, fmt: str, out: str | Path, with_decoding: bool = False,
    image_size: tuple[int, int] | None = None,
) -> Path:
    """Writes the module's network (and with `with_decoding`, the decoding) as `fmt` to `out`.

    Args:
        module: The trained module.
        fmt: "onnx" or "torchscript".
        out: The file to write.
        with_decoding: Outputs `keypoints` (B, C, K, 3) and `valid` (B, C, K) instead of
            `heatmaps` (see `DecodingModel`).
        image_size: (height, width) of the original images, with `with_decoding`.

    Returns:
        The path written.

    Raises:
        InputError: an unknown format, or ONNX without its packages installed.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose from {FORMATS}", "--format")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = build_export_model(module, with_decoding, image_size)
    height, width = module.cfg.data.input_size
    # On the module's device (`kp export --accelerator`): a TorchScript file traced on CUDA
    # keeps its tensors there; ONNX files are device-neutral.
    example = torch.rand(2, 3, height, width, device=next(module.parameters()).device)
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
    outputs = ["keypoints", "valid"] if with_decoding else ["heatmaps"]
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["images"],
        output_names=outputs,
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    _write_metadata(out, module, with_decoding, image_size)
    return out


def _write_metadata(out: Path, module: KeypointModule, with_decoding: bool,
                    image_size: tuple[int, int] | None) -> None:
    """Channel names and sizes as ONNX metadata, so a deployer needs nothing but the file."""
    import onnx

    data = module.cfg.data
    proto = onnx.load(str(out))
    props = {
        "channels": json.dumps(module.channel_names),
        "input_size": json.dumps(list(data.input_size)),
        "resize_mode": data.resize_mode,
        "with_decoding": json.dumps(with_decoding),
    }
    if with_decoding:
        props["image_size"] = json.dumps(list(image_size or data.input_size))
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(out))
