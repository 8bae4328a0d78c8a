"""`train(config, extra_callbacks)`: the one training path of `kp train` and of every sweep trial.

A run directory holds `config.yaml` (the resolved config), `checkpoints/best.ckpt` (best
`val/map`, or lowest `val/mean_px_error`: `eval.best_by`), `checkpoints/last.ckpt`,
`metrics.json`, `logs/version_N/metrics.csv` and, unless
wandb is disabled, the wandb run under `wandb/` (its id in `wandb_run_id`: one run directory is
one wandb run, however many times it is resumed).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from kp_platform.config import Config, config_to_dict, save_config
from kp_platform.config.auto import resolve_auto, resolve_from_data
from kp_platform.data.datamodule import KeypointDataModule
from kp_platform.data.dataset import single_instance_channels, single_points
from kp_platform.errors import InputError
from kp_platform.heatmaps.pose_prior import PosePrior
from kp_platform.models.module import KeypointModule
from kp_platform.training.callbacks import EvaluationCheckpoint
from kp_platform.training.checkpoints import load_init_weights, read_checkpoint
from kp_platform.training.distributed import build_strategy
from kp_platform.training.freeze import FreezeBatchNormStats, FreezeEncoder
from kp_platform.training.precise_bn import PreciseBatchNorm
from kp_platform.training.visualize import PredictionImages
from kp_platform.training.wandb_logging import (
    build_wandb_logger,
    declare_input_artifact,
    log_model_artifact,
    start_wandb_run,
)


@dataclass
class TrainResult:
    """Where a finished run left its files, and its scores."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path
    metrics: dict[str, Any]


def train(
    config: Config,
    extra_callbacks: Sequence[pl.Callback] = (),
    *,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    job_type: str = "train",
) -> TrainResult:
    """Trains one model.

    Args:
        config: The resolved config.
        extra_callbacks: More Lightning callbacks (a sweep trial adds its Tune reporter).
        resume: A run directory to continue from its `checkpoints/last.ckpt`.
        run_dir: Write here instead of `trainer.run_root/trainer.name`.
        job_type: The wandb job type.

    Raises:
        InputError: bad data, channels, checkpoint or resume directory.
    """
    resume_ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        resume_ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not resume_ckpt.is_file():
            raise InputError("nothing to resume: no checkpoints/last.ckpt", str(run_dir))
        read_checkpoint(resume_ckpt)  # fail early and clearly on a bad file
    config, chosen = resolve_auto(config)
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    datamodule = KeypointDataModule(config.data, seed=config.trainer.seed)
    splits = datamodule.splits
    config, from_data = resolve_from_data(
        config, list(datamodule.channels.names), single_instance_channels(splits.train),
        len(splits.train), val_images=len(splits.val), split_fraction=splits.split_fraction)
    for key, why in {**chosen, **from_data}.items():
        print(f"{key} = {why}")
    run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")

    module = KeypointModule.from_config(config, list(datamodule.channels.names))
    if config.eval.pose_prior:
        module.pose_prior = _fit_pose_prior(splits.train, module.channel_names, config)
    init_from = config.model.init_from
    if init_from and resume is None:
        # Weights only: the learning rate and every other setting come from `config`.
        loaded = load_init_weights(module, init_from)
        print(f"initialised {loaded['loaded']} tensors from {init_from} "
              f"({loaded['skipped']} kept their fresh values)")

    checkpointing = EvaluationCheckpoint(run_dir / "checkpoints")
    callbacks: list[pl.Callback] = [checkpointing, *extra_callbacks]
    if config.model.freeze_encoder_epochs > 0:
        callbacks.append(FreezeEncoder(config.model.freeze_encoder_epochs))
    if config.model.freeze_bn_stats:
        callbacks.append(FreezeBatchNormStats())
    elif config.eval.precise_bn:
        callbacks.append(PreciseBatchNorm())
    if config.trainer.early_stop_patience > 0:
        callbacks.append(pl.callbacks.EarlyStopping(
            monitor="val/loss", mode="min", patience=config.trainer.early_stop_patience))
    config_dict = config_to_dict(config)
    wandb_logger = build_wandb_logger(config.logging.wandb, run_dir, config_dict, job_type)
    # logs/version_N/metrics.csv: a resumed run adds a version instead of overwriting one.
    loggers: list[Any] = [pl.loggers.CSVLogger(run_dir, name="logs")]
    if wandb_logger is not None:
        loggers.append(wandb_logger)
        run = start_wandb_run(wandb_logger)  # now: a failure is one line, not a traceback
        if init_from and resume is None:
            declare_input_artifact(run, init_from, config.model.init_artifact)
        callbacks.append(PredictionImages(wandb_logger))

    trainer = pl.Trainer(
        max_epochs=config.trainer.max_epochs,
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        # Several devices: DDP with rank 0 in this process (training/distributed.py says why).
        strategy=build_strategy(config.trainer.devices, config.trainer.accelerator),
        precision=config.trainer.precision,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=run_dir,
        enable_checkpointing=False,
        enable_progress_bar=config.trainer.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=False,
    )
    try:
        with warnings.catch_warnings():
            # Tiny datasets make Lightning warn about few batches and no DataLoader workers.
            warnings.filterwarnings("ignore",
                                    message=".*(num_workers|number of training batches).*")
            # weights_only explicitly: torch 2.4 / 2.5 (allowed by the requirement) would unpickle.
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt,
                        weights_only=True)
            if module.last_evaluated_epoch < module.epochs_trained - 1:
                # Early stopping ended the run between evaluations: evaluate the final weights.
                module.force_evaluation = True
                evaluator = trainer
                if trainer.world_size > 1:
                    # One process evaluates: the metrics equal the N-process ones by
                    # construction, and a second DDP launch from this process hangs at the
                    # rendezvous (seen on CPU/gloo; not understood yet).
                    evaluator = pl.Trainer(
                        accelerator=config.trainer.accelerator, devices=1,
                        precision=config.trainer.precision, callbacks=callbacks,
                        logger=loggers, default_root_dir=run_dir, enable_checkpointing=False,
                        enable_progress_bar=config.trainer.progress_bar,
                        enable_model_summary=False)
                evaluator.validate(module, datamodule=datamodule, verbose=False)
    except BaseException:
        if wandb_logger is not None:
            # Close the run with a failure record: a retry (same run directory) continues it.
            # The training error is the one to report, not a failure to close the run.
            with contextlib.suppress(Exception):
                wandb_logger.experiment.finish(exit_code=1)
        raise

    best = checkpointing.best_path if checkpointing.best_path.is_file() else None
    best_name, _ = module.best_metric
    metrics = {
        "best": {best_name: checkpointing.best_score, "epoch": checkpointing.best_epoch},
        # What best.ckpt holds: the best evaluation ("best") or the final weights ("final").
        "keep": module.cfg.eval.keep,
        "last": module.last_metrics,
        "epochs": module.epochs_trained,
        "channels": module.channel_names,
        "device": device_name(trainer.strategy.root_device),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if wandb_logger is not None:
        if best is not None:
            log_model_artifact(
                wandb_logger.experiment, best, name=f"{run_dir.name}-model",
                metadata={best_name: checkpointing.best_score, "epoch": checkpointing.best_epoch,
                          "config": config_dict},
                aliases=["best", "latest"],
            )
        wandb_logger.experiment.finish()
    return TrainResult(run_dir, best, checkpointing.last_path, metrics)


def device_name(device: torch.device) -> str:
    """`cuda:0 (NVIDIA H200)`, `cpu`: where a run trained, as its metrics.json records it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _new_run_dir(config: Config) -> Path:
    root = Path(config.trainer.run_root)
    candidate = root / config.trainer.name
    suffix = 2
    while candidate.exists():
        candidate = root / f"{config.trainer.name}-{suffix}"
        suffix += 1
    return candidate


def _fit_pose_prior(dataset: Any, channel_names: list[str], config: Config) -> PosePrior | None:
    """The pose prior of the top-1 channels labelled in at least two training images (None
    where fewer than two such channels), with a line saying what it covers (none where there
    is no top-1 channel at all: nothing to say)."""
    top1 = [channel_names.index(name) for name in config.eval.top1_channels]
    if not top1:
        return None
    points = single_points(dataset, top1)
    labelled = (~np.isnan(points[..., 0])).sum(axis=0)
    kept = [slot for slot, count in enumerate(labelled) if count >= 2]
    if len(kept) < 2:
        print("eval.pose_prior = off (fewer than two top-1 channels labelled in two training "
              "images: each top-1 channel takes its best peak)")
        return None
    prior = PosePrior.fit(points[:, kept], [top1[slot] for slot in kept],
                          noise=config.heatmap.sigma)
    print(f"eval.pose_prior = on ({len(kept)} top-1 channels, fitted to the labels of "
          f"{len(points)} training images: each chooses its point among its peaks)")
    return prior
