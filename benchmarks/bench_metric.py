"""Benchmark: plain-loop oracle vs vectorised keypoint metrics (AP, PCK, distance stats).

Workloads: (a) 500 images, 1 channel, 10 GT and 20 detections per image; (b) 5000 images,
4 channels, 50 GT and 100 detections per image; thresholds 2 4 8 px. Detections are mostly GT plus
Gaussian noise, the rest spurious, with scores rounded to 2 decimals so that ties occur.

The oracle on the full (b) takes minutes, so by default it is timed on the first
``--oracle-images`` images of (b) and scaled linearly to the full size (matching cost is linear in
images); the output says so. Values are checked equal (to 1e-12) on the full (a) and on that
subset of (b). The vectorised time is the median of three calls on the full workload, including
packing the per-image arrays; the oracle is timed once.

Torch runs on one CPU thread by default (``--threads``): the oracle is single-threaded too, and on
a small shared machine OpenMP worker threads that compete with other processes spin-wait and can
make the vectorised code several times slower.

Run: ``.venv/bin/python benchmarks/bench_metric.py`` (add ``--oracle-images 5000`` for an
unscaled oracle time on (b), about 3 minutes more).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.metrics.oracle

from kp_platform.metrics.average_precision import compute_keypoint_metrics  # noqa: E402
from tests.metrics import oracle  # noqa: E402

THRESHOLDS = [2.0, 4.0, 8.0]


def workload(
    num_images: int, channels: int, num_gt: int, num_det: int, seed: int
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """A realistic workload: 80 % of detections near a GT (sigma 3 px), 20 % spurious.

    Returns:
        detections[i][c]: (num_det, 3) of (x, y, score); ground_truth[i][c]: (num_gt, 2).
    """
    rng = np.random.default_rng(seed)
    size = 512.0
    gt = rng.uniform(0, size, (num_images, channels, num_gt, 2))
    near = rng.random((num_images, channels, num_det)) < 0.8
    pick = rng.integers(0, num_gt, (num_images, channels, num_det))
    base = np.take_along_axis(gt, pick[..., None].repeat(2, -1), axis=2)
    xy = np.where(near[..., None], base + rng.normal(0, 3.0, base.shape),
                  rng.uniform(0, size, base.shape))
    score = np.where(near, rng.uniform(0.3, 1.0, near.shape), rng.uniform(0.0, 0.6, near.shape))
    dets = np.concatenate([xy, np.round(score, 2)[..., None]], axis=-1)
    return (
        [[dets[i, c] for c in range(channels)] for i in range(num_images)],
        [[gt[i, c] for c in range(channels)] for i in range(num_images)],
    )


def max_difference(a: Any, b: Any) -> float:
    """Largest absolute difference between two metrics dicts; raises if their shapes differ."""
    if isinstance(a, dict):
        if a.keys() != b.keys():
            raise AssertionError(f"keys differ: {a.keys()} vs {b.keys()}")
        return max([max_difference(a[k], b[k]) for k in a] + [0.0])
    if a is None or b is None:
        if not (a is None and b is None):
            raise AssertionError(f"{a} vs {b}")
        return 0.0
    return abs(float(a) - float(b))


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Result and wall-clock seconds of one call."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_case(label: str, shape: tuple[int, int, int, int], oracle_images: int) -> None:
    """Times both implementations on one workload and checks their values agree."""
    num_images, channels, num_gt, num_det = shape
    dets, gts = workload(num_images, channels, num_gt, num_det, seed=len(label))
    names = [f"kp{c}" for c in range(channels)]
    runs = [timed(compute_keypoint_metrics, dets, gts, names, THRESHOLDS) for _ in range(3)]
    fast = runs[0][0]
    fast_s = statistics.median(seconds for _, seconds in runs)
    sub = min(oracle_images, num_images)
    slow, slow_s = timed(oracle.keypoint_metrics, dets[:sub], gts[:sub], names, THRESHOLDS)
    fast_sub = compute_keypoint_metrics(dets[:sub], gts[:sub], names, THRESHOLDS)
    diff = max_difference(fast_sub, slow)
    if diff > 1e-12:
        raise AssertionError(f"metric ({label}): oracle and vectorised differ by {diff}")
    scaled = slow_s * num_images / sub
    note = ""
    if sub < num_images:
        note = f" (oracle timed on {sub} images, scaled x{num_images / sub:g})"
    print(f"  {label}: {num_images} images, {channels} ch, {num_gt} GT, {num_det} det/img; "
          f"values equal on {sub} images (max |diff| {diff:.1e}); mAP {fast['map']:.4f}")
    print(f"metric ({label}): oracle {scaled:.2f} s, vectorised {fast_s:.3f} s, "
          f"ratio {scaled / fast_s:.0f}x{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle-images", type=int, default=1000,
                        help="images of (b) the oracle is timed on (then scaled); default 1000")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; default 1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPUs, load average {load:.1f}, thresholds "
          f"{' '.join(format(t, 'g') for t in THRESHOLDS)}")
    run_case("a", (500, 1, 10, 20), oracle_images=500)
    run_case("b", (5000, 4, 50, 100), oracle_images=args.oracle_images)


if __name__ == "__main__":
    main()
