"""Backbones at equal wall time: the default U-Net vs timm encoders (random init) on the demo data.

Trains `configs/demo.yaml` with each backbone for the same wall-clock budget (from-scratch
weights everywhere: no weights can be downloaded here), evaluating every epoch, then evaluates
each run's best checkpoint on the held-out `real`-domain set. Prints, per backbone, parameters,
epochs done in the budget, the best `val/map` on the synthetic validation split and the `real`
mAP and AP@4.

    .venv/bin/python benchmarks/bench_backbones.py                 # 3 x 240 s, plus data
    .venv/bin/python benchmarks/bench_backbones.py --seconds 120 --backbones unet timm:resnet18
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.console import quiet_library_info
from kp_platform.data.synth import generate_dataset
from kp_platform.inference import evaluate_checkpoint
from kp_platform.training import train

DEFAULT_BACKBONES = ["unet", "timm:resnet18", "timm:convnext_nano"]


class WallClockBudget(pl.Callback):
    """Stops training at the first epoch end past `seconds` since the callback was made."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if time.monotonic() >= self.deadline:
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240, help="budget per backbone")
    parser.add_argument("--backbones", nargs="+", default=DEFAULT_BACKBONES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None,
                        help="demo data folder (default: generate into a temporary folder)")
    args = parser.parse_args()
    quiet_library_info()  # what `kp` shows: no Lightning banner or deprecation noise
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "demo_data"
        if not (data / "synthetic" / "annotations.json").is_file():
            generate_dataset(data / "synthetic", "synthetic", 500, 128, seed=0)
        if not (data / "real" / "annotations.json").is_file():
            generate_dataset(data / "real", "real", 100, 128, seed=1)
        print(f"{'backbone':20s} {'params':>8s} {'epochs':>6s} {'val/map':>8s} "
              f"{'real mAP':>8s} {'real AP@4':>9s}")
        for backbone in args.backbones:
            config = apply_overrides(load_config("configs/demo.yaml"), [
                f"data.train={data}/synthetic/annotations.json",
                f"data.test={data}/real/annotations.json",
                f"model.backbone={backbone}", "model.depth=3" if backbone == "unet" else
                "model.width=32", "trainer.max_epochs=100", "eval.eval_every=1",
                "logging.wandb.mode=disabled", "trainer.progress_bar=false",
                f"trainer.run_root={tmp}/runs", f"trainer.name={backbone.replace(':', '_')}",
            ])
            result = train(config, extra_callbacks=[WallClockBudget(args.seconds)])
            params = sum(p.numel() for p in torch.load(
                result.best_checkpoint, map_location="cpu", weights_only=True
            )["state_dict"].values())
            real = evaluate_checkpoint(result.best_checkpoint, f"{data}/real/annotations.json")
            print(f"{backbone:20s} {params / 1e6:7.2f}M {result.metrics['epochs']:6d} "
                  f"{result.metrics['best']['val/map']:8.3f} {real['map']:8.3f} "
                  f"{real['mean_ap']['4']:9.3f}", flush=True)


if __name__ == "__main__":
    main()
