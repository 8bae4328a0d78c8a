"""The calibration trial: a short training run, timed, on the resources a sweep trial gets.

It runs as a Ray task with the trial's CPUs and GPUs, so on a cluster it lands where trials land
and sees what they see (Ray gives a task as many CPU threads as CPUs it reserved).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl

from kp_platform.fit.plan import Timing

CALIBRATION_EPOCHS = 3
"""Epochs of the calibration run: the first pays for warm-up, the others are timed."""


class EpochTimer(pl.Callback):
    """Wall-clock seconds of each training epoch and each evaluation (not the sanity check)."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.evaluations: list[float] = []
        self._started = 0.0
        self._started_eval = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self._started)

    def on_validation_epoch_start(self, trainer: pl.Trainer,
                                  pl_module: pl.LightningModule) -> None:
        self._started_eval = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer,
                                pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.evaluations.append(time.perf_counter() - self._started_eval)


def time_training(base: dict[str, Any], epochs: int = CALIBRATION_EPOCHS) -> dict[str, float]:
    """Trains `base` (a config as plain data) for `epochs`, evaluating every epoch, and times it.

    Returns:
        {"total_s", "epoch_s", "eval_s"}: the whole call, and the median epoch and evaluation
        after the first.
    """
    from kp_platform.config import apply_overrides, config_from_dict
    from kp_platform.training import train

    start = time.perf_counter()
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="kp-fit-calibration-") as folder:
        config = apply_overrides(config_from_dict(base, source="kp fit"), {
            "trainer.max_epochs": epochs, "eval.eval_every": 1, "trainer.progress_bar": False,
            "logging.wandb.mode": "disabled", "trainer.early_stop_patience": 0})
        # What the run prints (its `auto` choices) belongs to the sweep's trials, not here.
        with contextlib.redirect_stdout(io.StringIO()):
            train(config, [timer], run_dir=folder)
    return {"total_s": time.perf_counter() - start,
            "epoch_s": statistics.median(timer.epochs[1:] or timer.epochs),
            "eval_s": statistics.median(timer.evaluations[1:] or timer.evaluations or [0.0])}


def calibrate(base: dict[str, Any], cpus: float, gpus: float) -> Timing:
    """Times a short run of `base` as a Ray task holding a trial's resources.

    Ray must be running (`kp_platform.tune.driver.runner.init_ray`).
    """
    import ray

    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(time_training)
    started = time.perf_counter()
    measured = ray.get(task.remote(base))
    total = time.perf_counter() - started  # with the worker's own start
    epochs = CALIBRATION_EPOCHS
    startup = max(0.0, total - epochs * (measured["epoch_s"] + measured["eval_s"]))
    return Timing(startup_s=startup, epoch_s=measured["epoch_s"], eval_s=measured["eval_s"])
