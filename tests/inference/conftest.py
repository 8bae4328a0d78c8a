"""Short videos written with OpenCV from the synthetic validation images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kp_platform.data.coco import CocoKeypoints
from kp_platform.data.image_io import read_rgb
from kp_platform.training import train
from tests.conftest import tiny_config

FPS = 12.5
FRAME_SIZE = (40, 48)  # (height, width): not the 32x32 network input, so mapping back matters


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    """Writes (H, W, 3) uint8 RGB frames as a video (mp4v for .mp4, MJPG for .avi)."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as (H, W, 3) uint8 RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, raw = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="session")
def frames(synth_data) -> list[np.ndarray]:
    """Six 40x48 RGB frames: the synthetic validation images, stretched."""
    images = CocoKeypoints.load(synth_data["val"]).images[:6]
    height, width = FRAME_SIZE
    return [cv2.resize(read_rgb(image.path), (width, height), interpolation=cv2.INTER_LINEAR)
            for image in images]


@pytest.fixture(scope="session")
def video(frames, tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames)


@pytest.fixture(scope="session")
def sharp_checkpoint(synth_data, tmp_path_factory) -> Path:
    """A 2-epoch run's checkpoint with a large random final layer.

    A 2-epoch model's heatmaps are nearly flat (every score close to the head prior), so
    float rounding that depends on the batch size or the runtime moves its sub-pixel peaks by
    hundredths of a pixel. Large final weights give well-separated peaks with curvature, on
    which decoding is well-conditioned and comparisons can be tight.
    """
    # The run keeps BatchNorm's running averages (`eval.precise_bn=false`): after 6 steps they
    # are still near their start (variance 1), so the layer below sees small features and these
    # weights give logits spread about 0.7 (scores up to about 0.13). With statistics of the
    # trained weights the features are 20 times larger and the same weights saturate.
    run = train(tiny_config(synth_data, tmp_path_factory.mktemp("sharp-run"),
                            "eval.precise_bn=false", "logging.wandb.mode=disabled"))
    checkpoint = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    weight = state["network.head.logits.weight"]
    generator = torch.Generator().manual_seed(0)
    # About 30 per weight for a 4-channel hidden layer: logits of similar spread at any width.
    scale = 60 / weight.shape[1] ** 0.5
    state["network.head.logits.weight"] = torch.randn(weight.shape, generator=generator) * scale
    # Position-blind, as the network was before the head's coordinate maps: with them, these
    # saturated logits reach 1.0 on whole border plateaus, and a comparison of peaks becomes a
    # comparison of tie-breaks.
    state["network.head.hidden.weight"][:, -2:] = 0
    config = checkpoint["hyper_parameters"]["config"]
    config["eval"]["score_threshold"] = 0.02
    path = tmp_path_factory.mktemp("sharp") / "sharp.ckpt"
    torch.save(checkpoint, path)
    return path
