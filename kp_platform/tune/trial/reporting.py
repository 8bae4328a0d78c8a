"""The Lightning → Tune bridge: one report per evaluation, with a checkpoint to resume from."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytorch_lightning as pl

# Inside the Tune checkpoint directory: the layout `train(resume=run_dir)` expects.
from kp_platform.tune.experiment import CHECKPOINT_FILE


class TuneReportCallback(pl.Callback):
    """Reports the fresh keypoint metrics to Tune at evaluation epochs only.

    The AP exists only on evaluation epochs; reporting anything on the others (a missing key, NaN,
    a stale value) silently breaks ASHA (see the project's Ray notes). So each report carries a
    fresh evaluation, every metric the module logged under `val/`, and an explicit `epoch`
    (training epochs completed), which is ASHA's time attribute.
    """

    def __init__(self) -> None:
        self._seen_evaluations = 0
        self.stopped = False
        """Tune stopped the trial (ASHA, or the sweep ending)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.sanity_checking or self.stopped
                or pl_module.evaluations <= self._seen_evaluations):
            return
        self._seen_evaluations = pl_module.evaluations
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val/") and value.numel() == 1 and math.isfinite(float(value))
        }
        # Within fit, validation runs before the epoch counter moves; after fit (the extra
        # evaluation that follows early stopping) the module's own count is the truth.
        fitting = trainer.state.fn == "fit"
        metrics["epoch"] = (pl_module.last_evaluated_epoch + 1 if fitting
                            else pl_module.epochs_trained)
        try:
            report_with_checkpoint(trainer, metrics)
        except SystemExit:
            # Tune's way of stopping a trial: end training after this epoch and let `train()`
            # close the wandb run and write its files (`trainable.graceful` waits for that).
            self.stopped = True
        if trainer.world_size > 1:
            # Only rank 0 hears Tune's decision; every DDP rank must stop at the same epoch.
            self.stopped = trainer.strategy.reduce_boolean_decision(self.stopped, all=False)
        if self.stopped:
            trainer.should_stop = True


def report_with_checkpoint(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """`tune.report` with a full Lightning checkpoint (optimizer and loop state included).

    Under DDP every rank calls it (saving a checkpoint is collective) and rank 0, the trial's
    own process, writes the file and reports; the other ranks are not in Tune's session.
    """
    with tempfile.TemporaryDirectory(prefix="kp-tune-ckpt-") as folder:
        trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE, weights_only=False)
        if trainer.global_rank != 0:
            return
        from ray import tune

        # Tune copies the folder into the trial's storage before `report` returns.
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
