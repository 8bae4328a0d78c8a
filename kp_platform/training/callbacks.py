"""Checkpointing on the sparse evaluations: `best.ckpt` by the module's chosen metric
(`eval.best_by`: `val/map` or `val/mean_px_error`) or the latest evaluation's weights
(`eval.keep: final`), `last.ckpt` every epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class EvaluationCheckpoint(pl.Callback):
    """Saves `best.ckpt` when an evaluation beats the best score so far (at every evaluation
    where `eval.keep` is `final`: the last epoch is always evaluated), and `last.ckpt` always.

    The score is the module's `best_score()` (the highest `val/map`, or the lowest
    `val/mean_px_error`: `KeypointModule.best_metric`); `best_score` here is that of the
    evaluation `best.ckpt` holds (the best seen, or the latest under `final`).

    Lightning's ModelCheckpoint insists on finding its monitored key after every validation; the
    AP exists only on evaluation epochs, so this callback compares fresh evaluations only and never
    a stale value.

    Args:
        dirpath: The run's `checkpoints/` folder.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.best_score: float | None = None
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
        score = pl_module.best_score() if fresh else None
        if fresh and self.keeps(pl_module, score):
            self.best_score = score
            self.best_epoch = pl_module.last_evaluated_epoch
            trainer.save_checkpoint(self.best_path, weights_only=False)
        if trainer.state.fn == "fit":
            trainer.save_checkpoint(self.last_path, weights_only=False)

    def keeps(self, pl_module: pl.LightningModule, score: float | None) -> bool:
        """Whether the fresh evaluation's weights become `best.ckpt`."""
        if pl_module.cfg.eval.keep == "final":
            return True
        if score is None or not math.isfinite(score):
            return False
        _, mode = pl_module.best_metric
        return self.best_score is None or (score < self.best_score if mode == "min"
                                           else score > self.best_score)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
