"""Short videos written with OpenCV from the synthetic validation images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kp_platform.data.coco import CocoKeypoints
from kp_platform.data.image_io import read_rgb

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
def sharp_checkpoint(trained_run, tmp_path_factory) -> Path:
    """The shared run's checkpoint with a large random final layer.

    A 2-epoch model's heatmaps are nearly flat (every score close to the head prior), so
    float rounding that depends on the batch size or the runtime moves its sub-pixel peaks by
    hundredths of a pixel. Large final weights give well-separated peaks with curvature, on
    which decoding is well-conditioned and comparisons can be tight.
    """
    checkpoint = torch.load(trained_run.last_checkpoint, map_location="cpu", weights_only=True)
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
