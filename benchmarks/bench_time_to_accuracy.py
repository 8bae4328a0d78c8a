"""Time to accuracy: the project's defaults vs a reference that mirrors the seed framework.

Generates a seeded data set of the seed framework's kind (filled quadrilaterals on noise,
`kp_platform.data.quads`: 200 train / 40 val images of 256², 1-3 quads each, channels
`kp0=kp1:kp2=kp3`, thresholds 2 and 4 px) and trains, each in a fresh process so the clock
starts at process start as a user's would:

  (a) defaults: only the data paths, channels, input size and thresholds set (and AP every
      epoch, so the curve is visible);
  (b) reference: the seed framework's published defaults: its U-Net shape (`seed_unet`: 32
      channels, 2 down-samplings, residual blocks), its head bias of -4 (prior 0.018), BCE on
      sigma=2 Gaussians at full resolution, Adam 3e-4 without weight decay or schedule, batch
      8, 0.01 score floor.

Both run with wandb and the progress bar off (logging is not what is compared), on
`--threads` torch threads, for 3 training seeds each. A run stops once it reaches the last
target (`--stop-at`) or its epoch budget. Prints s/epoch, `val/map` per epoch, time to 0.8 and
to 0.85 (seconds from process start), and the ratio (a)/(b) per seed.

With `--overfit`, instead: the defaults overfit 4 images of 64² (train = val, batch 2, 60
epochs) for each data seed; prints mean AP@4 every 5 epochs and the first epoch at >= 0.9.

    .venv/bin/python benchmarks/bench_time_to_accuracy.py            # about an hour
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --seeds 0 --only defaults
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --overfit --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = (0.8, 0.85)
BASE = [
    "data.channels=kp0=kp1:kp2=kp3",
    "data.input_size=[256,256]",
    "eval.thresholds=[2,4]",
    "eval.eval_every=1",
    "logging.wandb.mode=disabled",
    "trainer.progress_bar=false",
]
CONFIGS = {
    "defaults": [],
    "reference": [
        "model.backbone=seed_unet", "model.loss=bce", "model.head_prior=0.018",
        "heatmap.stride=1", "heatmap.sigma=2", "optim.optimizer=adam", "optim.lr=3e-4",
        "optim.weight_decay=0", "optim.schedule=none", "optim.warmup_epochs=0",
        "data.batch_size=8", "eval.score_floor=0.01",
    ],
}

# Runs inside the child process: trains and appends one JSON line per evaluation.
CHILD = r"""
import json, sys, time
import pytorch_lightning as pl
import torch
torch.set_num_threads(int(sys.argv[1]))
from kp_platform.config import apply_overrides, load_config
from kp_platform.console import quiet_library_info
from kp_platform.training import train
quiet_library_info()

out, stop_at, start = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

class Clock(pl.Callback):
    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or module.last_evaluated_epoch != trainer.current_epoch:
            return
        score = module.last_metrics["map"]
        with open(out, "a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch + 1, "map": score,
                                "seconds": time.time() - start}) + "\n")
        if score >= stop_at:
            trainer.should_stop = True

overrides = sys.argv[5:]
config = apply_overrides(load_config(None), overrides)
train(config, extra_callbacks=[Clock()])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default: 0 1 2)")
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--stop-at", type=float, default=max(TARGETS),
                        help="stop a run once val/map reaches this (default: 0.85)")
    parser.add_argument("--data", type=Path, default=None,
                        help="where to write the data set (default: a temporary folder)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="extra overrides for (a), to try candidate defaults")
    parser.add_argument("--reference-epochs", type=int, default=12,
                        help="epoch budget of (b) (default: 12; (a) keeps its default 20)")
    parser.add_argument("--overfit", action="store_true",
                        help="overfit 4 images of 64² per data seed instead")
    args = parser.parse_args()
    if args.overfit:
        for seed in args.seeds:
            print(overfit_four_images(seed, args.threads, args.set), flush=True)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        train_json, val_json = make_data(data)
        names = [args.only] if args.only else list(CONFIGS)
        curves: dict[str, dict[int, list[dict]]] = {}
        for name in names:
            extra = CONFIGS[name] + (args.set if name == "defaults" else
                                     [f"trainer.max_epochs={args.reference_epochs}"])
            for seed in args.seeds:
                overrides = [f"data.train={train_json}", f"data.val={val_json}", *BASE, *extra,
                             f"trainer.seed={seed}", f"trainer.run_root={tmp}/runs",
                             f"trainer.name={name}-{seed}"]
                curve = run(overrides, args.threads, args.stop_at, Path(tmp) / f"{name}-{seed}")
                curves.setdefault(name, {})[seed] = curve
                print(describe(name, seed, curve), flush=True)
        if len(curves) == 2:
            print_ratios(curves, args.seeds)


def overfit_four_images(seed: int, threads: int, extra: list[str]) -> str:
    """Defaults on 4 images of 64² (data seed `seed`), train = val, batch 2, 60 epochs."""
    import pytorch_lightning as pl
    import torch

    from kp_platform.config import apply_overrides, load_config
    from kp_platform.data.quads import CHANNELS, generate_quads
    from kp_platform.training import train

    torch.set_num_threads(threads)
    curve: list[float] = []

    class Record(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            fresh = module.last_evaluated_epoch == trainer.current_epoch
            if fresh and not trainer.sanity_checking:
                curve.append(module.last_metrics["mean_ap"]["4"])

    with tempfile.TemporaryDirectory() as tmp:
        coco = generate_quads(Path(tmp) / "data", 4, 64, seed=seed)
        config = apply_overrides(load_config(None), [
            f"data.train={coco}", f"data.val={coco}", f"data.channels={CHANNELS}",
            "data.input_size=[64,64]", "data.batch_size=2", "eval.thresholds=[4]",
            "trainer.max_epochs=60", "logging.wandb.mode=disabled", "trainer.progress_bar=false",
            f"trainer.run_root={tmp}/runs", *extra,
        ])
        train(config, extra_callbacks=[Record()])
    first = next((i + 1 for i, ap in enumerate(curve) if ap >= 0.9), None)
    every5 = " ".join(f"{ap:.2f}" for ap in curve[4::5])
    return (f"overfit data seed {seed}: first epoch at AP@4 >= 0.9: {first or 'never'}; "
            f"AP@4 every 5 epochs: {every5}")


def make_data(root: Path) -> tuple[Path, Path]:
    from kp_platform.data.quads import generate_quads

    train_json = root / "train" / "annotations.json"
    val_json = root / "val" / "annotations.json"
    if not train_json.is_file():
        generate_quads(root / "train", 200, 256, seed=0)
    if not val_json.is_file():
        generate_quads(root / "val", 40, 256, seed=1)
    return train_json, val_json


def run(overrides: list[str], threads: int, stop_at: float, log: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    # The clock starts just before the child process does, as a user's `time kp train` would.
    command = [sys.executable, "-c", CHILD, str(threads), str(log), str(stop_at),
               repr(time.time()), *overrides]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in log.read_text().splitlines()]


def time_to(curve: list[dict], target: float) -> float | None:
    return next((p["seconds"] for p in curve if p["map"] >= target), None)


def describe(name: str, seed: int, curve: list[dict]) -> str:
    epochs = len(curve)
    # s/epoch from the spacing of evaluations, so process start-up is not counted in it.
    per_epoch = ((curve[-1]["seconds"] - curve[0]["seconds"]) / (epochs - 1)
                 if epochs > 1 else curve[0]["seconds"])
    maps = " ".join(f"{p['map']:.2f}" for p in curve)
    reached = "  ".join(f"t({t})={_seconds(time_to(curve, t))}" for t in TARGETS)
    return f"{name:9s} seed {seed}: {per_epoch:5.1f} s/epoch  {reached}  val/map: {maps}"


def print_ratios(curves: dict[str, dict[int, list[dict]]], seeds: list[int]) -> None:
    for target in TARGETS:
        parts = []
        for seed in seeds:
            a = time_to(curves["defaults"][seed], target)
            b = time_to(curves["reference"][seed], target)
            parts.append(f"seed {seed}: " + (f"{a / b:.2f}" if a and b else
                                              f"{_seconds(a)} / {_seconds(b)}"))
        print(f"ratio (a)/(b) time to {target}: " + ", ".join(parts))


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}s"


if __name__ == "__main__":
    main()
