"""Prediction throughput: frames per second of `kp predict` on a video, batch 1 vs batch 16.

Run from the repository root (all figures come from one run, on one machine):

    .venv/bin/python benchmarks/bench_predict.py --threads 1
    .venv/bin/python benchmarks/bench_predict.py --accelerator cuda

The network is the demo's (configs/demo.yaml: U-Net, width 8, depth 3, 4 channels) at
128² and 256² inputs, with random weights whose final layer is scaled so the heatmaps have
peaks above the score threshold (an untrained head is flat and decoding would have nothing to
do). The video (VGA, 640 x 480, mp4v) is written first; each measurement is the whole
prediction path of `kp predict`: reading and resizing frames in the loader, the network and the
peak decoding on the device, detections back in original-image pixels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.inference import Detector, resolve_device
from kp_platform.inference.sources import collect_sources
from kp_platform.inference.stream import predict_sources
from kp_platform.models.module import KeypointModule

CHANNELS = ["corner", "grasp", "sleeve_left", "sleeve_right"]


def write_video(path: Path, frames: int, seed: int = 0) -> Path:
    """A 640 x 480 mp4 of blurred noise (textured, so the network sees varied input)."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for _ in range(frames):
        noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        writer.write(cv2.GaussianBlur(noise, (15, 15), 0))
    writer.release()
    return path


def demo_detector(size: int, device: torch.device) -> Detector:
    """The demo network at size² input, random weights, a final layer with peaks."""
    config = apply_overrides(load_config("configs/demo.yaml"),
                             [f"data.input_size=[{size}, {size}]"])
    torch.manual_seed(0)
    module = KeypointModule.from_config(config, CHANNELS)
    weight = module.network.head.logits.weight
    with torch.no_grad():
        weight.copy_(torch.randn_like(weight) * 30)
    return Detector(module, device)


def frames_per_second(detector: Detector, video: Path, batch_size: int, repeats: int) -> float:
    """Best of `repeats` runs over the whole video, after one warm-up batch."""
    sources, rule = collect_sources([video])
    next(predict_sources(detector, sources, rule, batch_size=batch_size))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(1 for _ in predict_sources(detector, sources, rule, batch_size=batch_size))
        best = min(best, time.perf_counter() - start)
    return count / best


def network_ms(detector: Detector, batch_size: int, repeats: int) -> float:
    """The network alone, ms per frame (best of `repeats` after a warm-up)."""
    size = detector.config.data.input_size
    images = torch.rand(batch_size, 3, *size, device=detector.device)
    best = float("inf")
    with torch.no_grad():
        detector.module(images)
        for _ in range(repeats):
            start = time.perf_counter()
            detector.module(images)
            if detector.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return 1000 * best / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.accelerator)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "bench.mp4", args.frames)
        print(f"device {device}, {args.frames} frames of 640x480, torch threads "
              f"{torch.get_num_threads()}")
        print("| input | batch 1 | batch 16 | ratio | network alone, batch 1 / 16 |")
        print("|---|---|---|---|---|")
        for size in (128, 256):
            detector = demo_detector(size, device)
            one = frames_per_second(detector, video, 1, args.repeats)
            sixteen = frames_per_second(detector, video, 16, args.repeats)
            alone = [network_ms(detector, b, args.repeats) for b in (1, 16)]
            print(f"| {size}² | {one:.1f} frames/s | {sixteen:.1f} frames/s | "
                  f"{sixteen / one:.2f}x | {alone[0]:.1f} / {alone[1]:.1f} ms per frame |",
                  flush=True)


if __name__ == "__main__":
    main()
