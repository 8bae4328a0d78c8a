"""Heatmap throughput: batched decode vs per-map loops, encoding vs the seed anchor and a loop.

Run from the repository root (all ratios come from one run, on one machine):

    .venv/bin/python benchmarks/bench_decode.py             # CPU
    .venv/bin/python benchmarks/bench_decode.py --device cuda

(a) decode of 64 x 4 x 256² heatmaps: batched vs the same function on one map at a time, and vs a
    seed-like loop (max-pool + nonzero on one 256² map at a time), in ms per image-channel.
(b) ground-truth encoding for a batch of 64 images (2 channels, 3-5 keypoints each, 256²,
    sigma 2), ms per image, vs the seed framework's anchor (7.8 ms per image) and a naive
    per-keypoint loop measured here.
(c) decode + the validation metric's update (``KeypointAP.update``: matching at 3 thresholds,
    on the heatmaps' device) per image-channel.
(d) the share of a validation step of the demo network that is not the network itself
    (targets, loss, decode, metric update).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kp_platform.config import apply_overrides, load_config
from kp_platform.heatmaps import Detections, decode_heatmaps, encode_heatmaps
from kp_platform.metrics import KeypointAP
from kp_platform.models.losses import heatmap_loss
from kp_platform.models.module import KeypointModule

SEED_ENCODE_MS_PER_IMAGE = 7.8  # the seed framework's encoder, measured on this kind of machine


def metric_update(
    metric: KeypointAP, detections: Detections, keypoints: torch.Tensor, mask: torch.Tensor
) -> None:
    """(c): what validation does per batch after decoding.

    Args:
        metric: The validation metric.
        detections: decode_heatmaps output for the batch.
        keypoints: (B, C, K, 2) ground truth in input pixels.
        mask: (B, C, K) bool, False for padding.
    """
    metric.update(detections.xy, detections.scores, detections.valid, keypoints, mask)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time in ms over ``repeats`` runs, after one warm-up run.

    The best, not the median: on a shared machine other processes only ever add time.
    """
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def random_keypoints(batch: int, channels: int, size: int, gen: torch.Generator,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, 5, 2) keypoints in the image and a mask with 3-5 valid keypoints per channel."""
    kp = 4 + torch.rand(batch, channels, 5, 2, generator=gen) * (size - 8)
    count = torch.randint(3, 6, (batch, channels, 1), generator=gen)
    mask = torch.arange(5) < count
    return kp.to(device), mask.to(device)


def naive_encode(kp: torch.Tensor, mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """One full-map Gaussian per keypoint in a Python loop (the seed's approach, not snapped)."""
    rows = torch.arange(size, dtype=torch.float32, device=kp.device)[:, None]
    cols = torch.arange(size, dtype=torch.float32, device=kp.device)[None, :]
    out = torch.zeros(kp.shape[0], kp.shape[1], size, size, device=kp.device)
    for b in range(kp.shape[0]):
        for c in range(kp.shape[1]):
            for k in range(kp.shape[2]):
                if mask[b, c, k]:
                    x, y = float(kp[b, c, k, 0]), float(kp[b, c, k, 1])
                    g = torch.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
                    torch.maximum(out[b, c], g, out=out[b, c])
    return out


def seed_like_decode(heatmaps: torch.Tensor, radius: int, threshold: float) -> list[torch.Tensor]:
    """Max-pool + nonzero on one map at a time (no refinement, no top-k)."""
    found = []
    for b in range(heatmaps.shape[0]):
        for c in range(heatmaps.shape[1]):
            h = heatmaps[b, c][None, None]
            pooled = F.max_pool2d(h, 2 * radius + 1, stride=1, padding=radius)
            found.append(((h == pooled) & (h > threshold))[0, 0].nonzero())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--noise", type=float, default=0.05,
                        help="uniform background noise added to the decoded heatmaps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); on a shared, loaded "
                             "machine 1 thread avoids waiting on descheduled workers")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    size, sigma = 256, 2.0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load average {load:.2f}")

    # (a) decode 64 x 4 x 256²: Gaussians (sigma 2, 3-5 per channel) over a little noise.
    batch, channels = 64, 4
    kp, mask = random_keypoints(batch, channels, size, gen, device)
    noise = torch.rand(batch, channels, size, size, generator=gen).to(device) * args.noise
    heat = torch.maximum(encode_heatmaps(kp, mask, size, size, sigma), noise)
    maps = batch * channels
    batched = timed(lambda: decode_heatmaps(heat), device, args.repeats)
    looped = timed(lambda: [decode_heatmaps(heat[b:b + 1, c:c + 1]) for b in range(batch)
                            for c in range(channels)], device, max(1, args.repeats // 2))
    seed = timed(lambda: seed_like_decode(heat, 2, 0.1), device, max(1, args.repeats // 2))
    print(f"(a) decode {batch}x{channels}x{size}²: batched {batched / maps:.3f} ms/map, "
          f"same function per map {looped / maps:.3f} ms/map "
          f"(ratio {looped / batched:.1f}x), seed-like pool+nonzero loop "
          f"{seed / maps:.3f} ms/map (ratio {seed / batched:.1f}x)")

    # (b) ground-truth encoding for a batch of 64 images, 2 channels.
    batch, channels = 64, 2
    kp, mask = random_keypoints(batch, channels, size, gen, device)
    ours = timed(lambda: encode_heatmaps(kp, mask, size, size, sigma), device, args.repeats)
    buffer = torch.empty(batch, channels, size, size, device=device)
    reused = timed(lambda: encode_heatmaps(kp, mask, size, size, sigma, out=buffer), device,
                   args.repeats)
    exact = timed(lambda: encode_heatmaps(kp, mask, size, size, sigma, truncate=None), device,
                  args.repeats)
    few = 8  # the naive loop is slow: time 8 images and report per image
    naive = timed(lambda: naive_encode(kp[:few], mask[:few], size, sigma), device, 1) / few
    anchor = SEED_ENCODE_MS_PER_IMAGE
    print(f"(b) encode {batch}x{channels}x{size}², 3-5 kp, sigma {sigma}, ms/image "
          f"[anchor {anchor} / ours]: truncate=4 {ours / batch:.3f} [{anchor * batch / ours:.1f}x]"
          f", with a reused out= buffer {reused / batch:.3f} [{anchor * batch / reused:.1f}x], "
          f"exact {exact / batch:.3f} [{anchor * batch / exact:.1f}x]; naive per-keypoint loop "
          f"{naive:.3f} ms/image = {naive * batch / ours:.1f}x ours")

    # (c) decode + metric update per image-channel, as in a validation step.
    batch, channels = 64, 4
    kp, mask = random_keypoints(batch, channels, size, gen, device)
    heat = torch.maximum(encode_heatmaps(kp, mask, size, size, sigma), noise)
    metric = KeypointAP([f"c{i}" for i in range(channels)], [2.0, 4.0, 8.0]).to(device)
    detections = decode_heatmaps(heat)
    decode_only = timed(lambda: decode_heatmaps(heat), device, args.repeats)
    update_only = timed(lambda: metric_update(metric, detections, kp, mask), device, args.repeats)
    per_map = batch * channels
    print(f"(c) decode {decode_only / per_map:.3f} + metric update {update_only / per_map:.3f} = "
          f"{(decode_only + update_only) / per_map:.3f} ms/image-channel (goal <= 0.2)")

    # (d) the share of a whole validation step (the demo network: unet width 8, depth 3,
    # 16 images of 128², 4 channels) that decoding and the metric update take.
    config = apply_overrides(load_config(), ["model.width=8", "model.depth=3"])
    module = KeypointModule.from_config(config, [f"c{i}" for i in range(channels)]).eval()
    module.to(device)
    batch, size = 16, 128
    kp, mask = random_keypoints(batch, channels, size, gen, device)
    images = torch.rand(batch, 3, size, size, generator=gen).to(device)

    with torch.no_grad():
        logits = module(images)
    target_batch = {"image": images, "target_xy": kp, "target_mask": mask}

    def network() -> None:
        with torch.no_grad():
            module(images)

    def targets_and_loss() -> None:
        heatmap_loss(logits, module.targets(target_batch))

    def decode_and_update() -> None:
        metric_update(metric, module.decode(logits), kp, mask)

    forward = timed(network, device, args.repeats)
    loss = timed(targets_and_loss, device, args.repeats)
    keypoints = timed(decode_and_update, device, args.repeats)
    total = forward + loss + keypoints
    print(f"(d) validation step of {batch} x {size}²: network {forward:.1f} ms, targets + loss "
          f"{loss:.1f} ms, decode + metric update {keypoints:.1f} ms = "
          f"{100 * keypoints / total:.1f}% of the step")


if __name__ == "__main__":
    main()
