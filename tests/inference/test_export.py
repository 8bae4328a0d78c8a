from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from kp_platform.data.coco import CocoKeypoints
from kp_platform.data.image_io import read_rgb
from kp_platform.data.synth import generate_dataset
from kp_platform.inference import Detector, export_model

IMAGE_SIZE = 48  # the validation images; the network input is 32x32


@pytest.fixture(scope="module")
def validation_images(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("val48")
    coco = generate_dataset(root, "synthetic", 8, IMAGE_SIZE, seed=3, workers=1)
    return [image.path for image in CocoKeypoints.load(coco).images]


def run_exported(fmt: str, path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, h, w) float32 → keypoints (B, C, K, 3), valid (B, C, K) from an exported file."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["keypoints", "valid"]
        keypoints, valid = session.run(None, {"images": images})
        return keypoints, valid
    with torch.no_grad():
        keypoints, valid = torch.jit.load(str(path))(torch.from_numpy(images))
    return keypoints.numpy(), valid.numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_decoding_matches_detector(fmt, sharp_checkpoint, validation_images,
                                               run_kp, tmp_path):
    out = tmp_path / f"model.{fmt}"
    code, _, err = run_kp("export", "--checkpoint", sharp_checkpoint, "--format", fmt, "--out",
                          out, "--with-decoding", "--image-size", IMAGE_SIZE, IMAGE_SIZE)
    assert code == 0, err
    detector = Detector.from_checkpoint(sharp_checkpoint)
    expected = detector.predict(validation_images)
    inputs = torch.stack([detector.prepare(read_rgb(p))[0] for p in validation_images])
    keypoints, valid = run_exported(fmt, out, (inputs.float() / 255).numpy())
    assert keypoints.shape == (8, 2, detector.config.eval.top_k, 3)
    total = 0
    for b, per_channel in enumerate(expected):
        for c, name in enumerate(detector.channel_names):
            want, got = per_channel[name], keypoints[b, c][valid[b, c]]
            assert got.shape == want.shape, (b, name)
            np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=0, atol=1e-3)
            np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=0, atol=1e-4)
            total += len(want)
    assert total > 50
    if fmt == "onnx":
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(props["channels"]) == detector.channel_names
        assert json.loads(props["image_size"]) == [IMAGE_SIZE, IMAGE_SIZE]


def test_letterboxed_frames_of_another_shape(sharp_checkpoint, frames, tmp_path):
    """40 x 48 video frames letterboxed into the 32 x 32 input: padding rows, anisotropic map."""
    checkpoint = torch.load(sharp_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["config"]["data"]["resize_mode"] = "letterbox"
    letterbox = tmp_path / "letterbox.ckpt"
    torch.save(checkpoint, letterbox)
    detector = Detector.from_checkpoint(letterbox)
    out = export_model(detector.module, "onnx", tmp_path / "m.onnx", with_decoding=True,
                       image_size=frames[0].shape[:2])
    inputs = torch.stack([detector.prepare(f)[0] for f in frames])
    keypoints, valid = run_exported("onnx", out, (inputs.float() / 255).numpy())
    for b, per_channel in enumerate(detector.predict(frames)):
        for c, name in enumerate(detector.channel_names):
            want, got = per_channel[name], keypoints[b, c][valid[b, c]]
            assert got.shape == want.shape, (b, name)
            np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=0, atol=1e-3)
            np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=0, atol=1e-4)


def test_image_size_needs_the_decoding(sharp_checkpoint, run_kp, tmp_path):
    code, _, err = run_kp("export", "--checkpoint", sharp_checkpoint, "--format", "onnx",
                          "--out", tmp_path / "m.onnx", "--image-size", "4", "4")
    assert code == 2 and err.startswith("error: --image-size: ")
