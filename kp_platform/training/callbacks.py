"""Checkpointing on the sparse evaluations: `best.ckpt` by `val/map`, `last.ckpt` every epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class EvaluationCheckpoint(pl.Callback):
    """Saves `best.ckpt` when an evaluation beats the best `val/map`, and `last.ckpt` always.

    Lightning's ModelCheckpoint insists on finding its monitored key after every validation; the
    AP exists only on evaluation epochs, so this callback compares fresh evaluations only and never
    a stale value.

    Args:
        dirpath: The run's `checkpoints/` folder.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.best_score = -math.inf
        self.best_epoch = -1
        self._seen_evaluations = 0

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.ckpt"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        fresh = pl_module.evaluations > self._seen_evaluations
        self._seen_evaluations = pl_module.evaluations
        if fresh and pl_module.last_metrics is not None:
            score = pl_module.last_metrics["map"]
            if score > self.best_score:
                self.best_score = score
                self.best_epoch = pl_module.last_evaluated_epoch
                trainer.save_checkpoint(self.best_path, weights_only=False)
        if trainer.state.fn == "fit":
            trainer.save_checkpoint(self.last_path, weights_only=False)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
