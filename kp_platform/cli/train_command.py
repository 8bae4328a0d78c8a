"""`kp train [CONFIG.yaml] [key=value ...] [--resume RUN_DIR] [--init-from CKPT]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train one model into a run directory",
        description="Train a heatmap keypoint detector. The config is built from the defaults, "
        "CONFIG.yaml, then key=value overrides (e.g. optim.lr=3e-4 trainer.max_epochs=50). "
        "The run directory (trainer.run_root/trainer.name) receives config.yaml, "
        "checkpoints/best.ckpt (best by eval.best_by: the lowest val/mean_px_error where every "
        "channel holds one keypoint per image, else the highest val/map; the final weights "
        "where the validation set has fewer than 100 images, eval.keep), "
        "checkpoints/last.ckpt, metrics.json and the wandb run (offline unless credentials "
        "exist and logging.wandb.mode=online).",
    )
    parser.add_argument("config", metavar="CONFIG.yaml",
                        help="a config file; keys it leaves out keep their defaults "
                        "(configs/demo.yaml is one). Leave it out to start from the defaults "
                        "alone: kp train data.train=PATH")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config keys on top of the file (data.train=PATH, optim.lr=1e-3)")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue RUN_DIR from its checkpoints/last.ckpt")
    parser.add_argument(
        "--init-from", metavar="CKPT", default=None,
        help="initialise the weights from a checkpoint path or "
        "wandb:<entity>/<project>/<name>:<alias>; every hyperparameter still comes from the "
        "config and overrides (the same as model.init_from=CKPT)",
    )
    parser.set_defaults(func=run_train)


def resolve_config(args: argparse.Namespace) -> Any:
    """The run's config: defaults, CONFIG.yaml, then the key=value overrides (a `Config`). A
    first argument of the form key=value that names no file is the first override, on the
    defaults alone."""
    from kp_platform.config import load_config

    config_file, overrides = args.config, list(args.overrides)
    if "=" in config_file and not Path(config_file).exists():
        config_file, overrides = None, [config_file, *overrides]
    if args.init_from:
        overrides.append(f"model.init_from={args.init_from}")
    return load_config(config_file, overrides)


def run_train(args: argparse.Namespace) -> int:
    from kp_platform.training import train

    result = train(resolve_config(args), resume=args.resume)
    best = dict(result.metrics["best"])
    epoch = best.pop("epoch")
    (name, value), = best.items()
    print(f"run: {result.run_dir}")
    score = "none" if value is None else f"{value:.4f}"
    print(f"best {name} {score} at epoch {epoch}: {result.best_checkpoint}")
    return 0
