"""Training-step time with NCHW (contiguous) against channels-last (NHWC) weights and images.

Run from the repository root (all figures come from one run, on one machine):

    .venv/bin/python benchmarks/bench_layout.py [--steps 8]

Each row builds a network as `kp train` does (`build_network`), times `--steps` AdamW steps
(forward, backward, update) on random images after 3 warm-up steps, first in channels-last
(weights and images, what `KeypointNet` uses), then on its NCHW copy (`exportable()`).
The rows: the defaults at 256² (U-Net depth 5, channels capped at 64, heatmap stride 2, batch
8, as on mirror-mouse), the demo's U-Net at 128² (stride 1, batch 16), a dilated CNN and a
timm ResNet-18 at 256².
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from kp_platform.config.schema import HeatmapConfig, ModelConfig
from kp_platform.models.network import build_network

CASES = [
    ("unet, defaults at 256² (depth 5, max width 64)", ModelConfig(depth=5), 2, 8, 256),
    ("unet, the demo's at 128² (depth 3, stride 1)", ModelConfig(depth=3), 1, 16, 128),
    ("dilated_cnn (width 32, depth 4) at 256²",
     ModelConfig(backbone="dilated_cnn", depth=4, width=32), 2, 8, 256),
    ("timm:resnet18 at 256²", ModelConfig(backbone="timm:resnet18", width=32, depth=4), 2, 8, 256),
]


def seconds_per_step(network: nn.Module, images: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(network.parameters(), 1e-3)

    def step() -> None:
        network(images).mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row (default 8)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| network | NCHW s/step | channels-last s/step | ratio |")
    print("|---|---|---|---|")
    for name, model_cfg, stride, batch, size in CASES:
        torch.manual_seed(0)
        images = torch.rand(batch, 3, size, size)
        network = build_network(model_cfg, HeatmapConfig(stride=stride), 17)
        last = seconds_per_step(network, images, args.steps)
        nchw = seconds_per_step(network.exportable(), images, args.steps)
        print(f"| {name} | {nchw:.3f} | {last:.3f} | {nchw / last:.2f} |", flush=True)


if __name__ == "__main__":
    main()
