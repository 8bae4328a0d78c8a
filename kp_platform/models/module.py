"""The LightningModule: heatmap targets on the device, losses per channel, AP in validation.

Validation always computes the losses; the keypoint metrics (decode on the device + matching) run
only on evaluation epochs (`eval.eval_every`, plus the last epoch), and nothing but the detections
leaves the device.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics.aggregation import MeanMetric

from kp_platform.config import Config, config_from_dict, config_to_dict
from kp_platform.config.auto import resolve_auto
from kp_platform.config.schema import AUTO
from kp_platform.heatmaps import Detections, decode_heatmaps, encode_heatmaps, heatmap_size
from kp_platform.heatmaps.pose_prior import PosePrior, choose_top1
from kp_platform.metrics import KeypointAP, Top1Error
from kp_platform.models.losses import heatmap_loss
from kp_platform.models.network import KeypointNet, build_network
from kp_platform.ranks import all_ranks_finite, share_rank_zero_buffers


class KeypointModule(pl.LightningModule):
    """Trains and validates a KeypointNet.

    Args:
        config: The config as plain data (`config_to_dict`); stored in checkpoints with its
            `auto` values resolved.
        channel_names: Heatmap channel names, in channel order.
    """

    def __init__(self, config: dict[str, Any], channel_names: list[str]) -> None:
        super().__init__()
        self.cfg: Config = resolve_auto(config_from_dict(config, source="checkpoint config"))[0]
        self.save_hyperparameters(
            {"config": config_to_dict(self.cfg), "channel_names": list(channel_names)}
        )
        self.channel_names = list(channel_names)
        self.network: KeypointNet = build_network(
            self.cfg.model, self.cfg.heatmap, len(self.channel_names)
        )
        self.configure_metrics()
        # Validation losses as metrics (a weighted sum and its weight, summed across ranks): under
        # DDP ranks may run different numbers of batches, and Lightning's `sync_dist` average
        # then weighs them wrongly (measured: 5/4 of the one-process loss with 4 + 1 images).
        # The LR plateau and early stopping watch val/loss, so every rank must see the same.
        self.val_losses = torch.nn.ModuleList(
            MeanMetric(nan_strategy="disable") for _ in range(1 + len(self.channel_names)))
        self._target_buffer: Tensor | None = None
        self.force_evaluation = False
        """Set by `train()` to evaluate once more after early stopping ended a run."""
        self.last_metrics: dict[str, Any] | None = None
        """The keypoint metrics of the latest evaluation (metrics JSON form)."""
        self.last_evaluated_epoch = -1
        self.evaluations = 0
        """How many evaluations ran; callbacks compare it to tell a fresh AP from a stale one."""
        self.epochs_trained = 0
        """Training epochs completed (Lightning's epoch counter stays put when a run stops)."""
        self.pose_prior: PosePrior | None = None
        """Chooses the top-1 channels' points (`eval.pose_prior`); set by `train()` from the
        training labels, saved in and read from checkpoints."""

    def configure_metrics(self) -> None:
        """(Re)builds the evaluation metrics from `cfg.eval` (after changing its thresholds,
        matching or top-1 channels): the AP, and the top-1 error of the single-instance
        channels (resolved by `train()` from the data; an unresolved `auto` means none)."""
        evaluation = self.cfg.eval
        self.metric = KeypointAP(self.channel_names, evaluation.thresholds, evaluation.matching)
        top1 = evaluation.top1_channels
        self.top1_channels = list(top1) if isinstance(top1, list) else []
        self.top1 = (Top1Error(self.channel_names, self.top1_channels, evaluation.thresholds)
                     if self.top1_channels else None)

    @classmethod
    def from_config(cls, config: Config, channel_names: list[str]) -> KeypointModule:
        return cls(config_to_dict(config), channel_names)

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) in [0, 1] → logits (B, C, H/s, W/s)."""
        return self.network(images)

    def targets(self, batch: dict[str, Any]) -> Tensor:
        """Gaussian heatmaps (B, C, H/s, W/s) drawn on the device from the batch's keypoints."""
        height, width = batch["image"].shape[-2:]
        stride = self.cfg.heatmap.stride
        batch_size, channels = batch["target_mask"].shape[:2]
        shape = (batch_size, channels, *heatmap_size(height, width, stride))
        buffer = self._target_buffer
        if buffer is None or buffer.shape != shape or buffer.device != batch["image"].device:
            buffer = None
        # Refilling one buffer skips a fresh (B, C, H, W) allocation per step, which on a CPU
        # costs more than drawing the Gaussians (benchmarks/RESULTS.md). The previous step's
        # backward pass, the only reader of the old targets, has finished by now.
        self._target_buffer = encode_heatmaps(
            batch["target_xy"], batch["target_mask"], height, width,
            self.cfg.heatmap.sigma, stride, out=buffer,
        )
        return self._target_buffer

    def decode(self, logits: Tensor, score_threshold: float | None = None) -> Detections:
        """Detections in input pixels from logits, batched on the device.

        Args:
            logits: (B, C, h, w) network outputs.
            score_threshold: Keep peaks above it; default ``eval.score_floor`` (validation
                scores every peak down to the floor, prediction passes ``eval.score_threshold``).
        """
        floor = self.cfg.eval.score_floor if score_threshold is None else score_threshold
        return decode_heatmaps(
            torch.sigmoid(logits.float()),
            nms_radius=self.cfg.eval.nms_radius,
            score_threshold=floor,
            top_k=self.cfg.eval.top_k or None,
            stride=self.cfg.heatmap.stride,
        )

    @property
    def choosing_with_prior(self) -> bool:
        return self.pose_prior is not None and self.cfg.eval.pose_prior

    def choose_top1(self, detections: Detections) -> Detections:
        """Puts each top-1 channel's chosen peak first: the pose prior's choice where there is
        one (`eval.pose_prior`), else the best peak, already first."""
        if not self.choosing_with_prior:
            return detections
        return choose_top1(detections, self.pose_prior, self.cfg.eval.score_threshold)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.pose_prior is not None:
            checkpoint["pose_prior"] = self.pose_prior.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "pose_prior" in checkpoint:
            self.pose_prior = PosePrior.from_state(checkpoint["pose_prior"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss, per_channel = heatmap_loss(logits, self.targets(batch), self.cfg.model.loss)
        # Every rank agrees before raising: one rank raising alone leaves the others hanging.
        if not all_ranks_finite(loss, self._trainer):
            where = "" if not torch.isfinite(loss) else " on another process"
            value = loss.item() if not torch.isfinite(loss) else "not finite"
            raise FloatingPointError(
                f"training loss is {value}{where} at epoch {self.current_epoch}"
            )
        self._log_losses("train", loss, per_channel, len(batch["image"]))
        return loss

    def on_train_epoch_end(self) -> None:
        self.epochs_trained = self.current_epoch + 1

    def on_validation_epoch_start(self) -> None:
        # Several processes: evaluate rank 0's model (the one checkpoints hold) on every rank.
        share_rank_zero_buffers(self, self._trainer)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss, per_channel = heatmap_loss(logits, self.targets(batch), self.cfg.model.loss)
        self._log_val_losses(loss, per_channel, len(batch["image"]))
        if self.evaluating:
            detections = self.choose_top1(self.decode(logits)).to_original(batch["affine"])
            self.metric.update(
                detections.xy,
                detections.scores,
                detections.valid,
                batch["gt_xy"],
                batch["gt_mask"],
                # Dataset indices: gathered across ranks, they restore the one-process image
                # order, which breaks score ties.
                image_ids=batch.get("index"),
            )
            if self.top1 is not None:
                self.top1.update(detections.xy, detections.valid, batch["gt_xy"],
                                 batch["gt_mask"], batch["orig_size"])

    def on_validation_epoch_end(self) -> None:
        if not self.evaluating:
            return
        metrics = self.metric.compute()
        self.metric.reset()
        if self.top1 is not None:
            metrics["top1"] = self.top1.compute()
            metrics["top1"]["chosen_by"] = ("pose prior" if self.choosing_with_prior
                                            else "best peak")
            self.top1.reset()
            self._log_top1(metrics["top1"])
        self.last_metrics = metrics
        self.last_evaluated_epoch = self.current_epoch
        self.evaluations += 1
        self.force_evaluation = False
        for name, per_threshold in metrics["ap"].items():
            for key, value in per_threshold.items():
                self.log(f"val/ap/{name}/{key}", value, sync_dist=True)
        for key, value in metrics["mean_ap"].items():
            self.log(f"val/mean_ap/{key}", value, sync_dist=True)
        # Equal on every rank (gathered state); sync_dist averages equal numbers: no change.
        self.log("val/map", metrics["map"], prog_bar=True, sync_dist=True)

    def _log_top1(self, top1: dict[str, Any]) -> None:
        """`val/mean_px_error`, `val/median_px_error`, `val/swap_rate`, `val/top1_pck/<T>` and
        `val/px_error/<channel>` (equal on every rank, like the AP)."""
        overall = top1["overall"]
        values = {"val/mean_px_error": overall["mean"], "val/median_px_error": overall["median"],
                  "val/swap_rate": overall["swap_rate"],
                  **{f"val/top1_pck/{key}": value for key, value in overall["pck"].items()},
                  **{f"val/px_error/{name}": stats["mean"]
                     for name, stats in top1["error_px"].items()}}
        for name, value in values.items():
            if value is not None:  # no labelled pair in this validation set
                self.log(name, value, sync_dist=True)

    def best_score(self) -> float | None:
        """The latest evaluation's value of the metric `best.ckpt` keeps (`eval.best_by`)."""
        metrics = self.last_metrics
        if metrics is None:
            return None
        if self.cfg.eval.best_by == "mean_px_error":
            return (metrics.get("top1") or {}).get("overall", {}).get("mean")
        return metrics["map"]

    @property
    def best_metric(self) -> tuple[str, str]:
        """(name, mode) of the metric `best.ckpt` keeps: `val/map` max by default."""
        if self.cfg.eval.best_by == "mean_px_error":
            return "val/mean_px_error", "min"
        return "val/map", "max"

    @property
    def evaluating(self) -> bool:
        """Whether this validation epoch computes the keypoint metrics."""
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking:
            return False
        if self.force_evaluation or trainer.state.fn != TrainerFn.FITTING:
            return True
        epoch = self.current_epoch + 1
        return epoch % self.cfg.eval.eval_every == 0 or epoch >= (trainer.max_epochs or 0)

    def _log_losses(self, stage: str, loss: Tensor, per_channel: Tensor, batch_size: int) -> None:
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=True,
            on_step=on_step,
            on_epoch=True,
            batch_size=batch_size,
            # Averaged over ranks (training ranks run equally many batches: Lightning's sampler
            # evens them out).
            sync_dist=True,
        )
        for name, value in zip(self.channel_names, per_channel, strict=True):
            self.log(
                f"{stage}/loss/{name}", value, on_step=False, on_epoch=True,
                batch_size=batch_size, sync_dist=True,
            )

    def _log_val_losses(self, loss: Tensor, per_channel: Tensor, batch_size: int) -> None:
        names = ["val/loss", *(f"val/loss/{name}" for name in self.channel_names)]
        for metric, name, value in zip(self.val_losses, names, [loss, *per_channel],
                                       strict=True):
            metric.update(value.detach().float(), weight=batch_size)
            # Lightning computes (synchronised) and resets the metric at the epoch's end.
            self.log(name, metric, on_step=False, on_epoch=True, batch_size=batch_size,
                     prog_bar=name == "val/loss")

    def configure_optimizers(self) -> Any:
        optim = self.cfg.optim
        cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
        optimizer = cls(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        max_epochs = self.cfg.trainer.max_epochs
        if max_epochs == AUTO:
            raise ValueError("trainer.max_epochs is auto, which train() resolves from the "
                             "training data (config.auto.resolve_from_data): set it for a "
                             "module built by hand")
        warmup = min(optim.warmup_epochs, max_epochs - 1)
        if optim.schedule == "plateau":
            # Plateau watches the validation loss, which exists every epoch (AP may not).
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=3
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"},
            }
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _EpochSchedule(optim.schedule, warmup, max_epochs)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


class _EpochSchedule:
    """Learning-rate factor per epoch: linear warm-up, then none / cosine / step decay."""

    def __init__(self, kind: str, warmup: int, max_epochs: int) -> None:
        self.kind, self.warmup, self.max_epochs = kind, warmup, max_epochs

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        if self.kind == "cosine":
            span = max(1, self.max_epochs - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * (epoch - self.warmup) / span))
        if self.kind == "step":
            # Divide by 10 at 2/3 of the run, as common detection recipes do.
            return 0.1 if epoch >= self.warmup + (2 * (self.max_epochs - self.warmup)) // 3 else 1
        return 1.0
