"""BatchNorm statistics re-estimated before each evaluation (`eval.precise_bn`).

A BatchNorm layer evaluates with running statistics: an exponential average (momentum 0.1) of
the batch statistics of past training steps, taken while the weights were still changing.
Early in training, when each step moves the weights most, that average describes an older
network, and the evaluation scores a network that never existed: on the quads benchmark
(benchmarks/RESULTS.md) seed 2 read `val/map` 0.04 and 0.02 after epochs 2 and 3 with the
running averages and 0.14 and 0.44 with statistics of the same weights. A sweep's ASHA rungs
and `best.ckpt` are decided on those early evaluations.

So before each evaluation the statistics are computed afresh, with the current weights, from
the latest training batches (the "precise BN" of Wu & Johnson, Rethinking "Batch" in
BatchNorm, 2021): the training images already on the device, one forward pass each without
gradients. The checkpoints written after the evaluation hold these statistics.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from kp_platform.models.layers import batch_norm_layers

RECENT_IMAGES = 64
"""Training images the statistics are estimated from (the latest batches that add up to at
least this many)."""


class PreciseBatchNorm(pl.Callback):
    """Keeps the latest training batches' images and, before each validation epoch of fitting
    that computes the keypoint metrics, re-estimates every BatchNorm layer's running mean and
    variance from them with the current weights. The images are kept across epochs (a small
    set's epoch may hold fewer than `images`).

    Args:
        images: How many of the latest training images to estimate from.
    """

    def __init__(self, images: int = RECENT_IMAGES) -> None:
        if images < 1:
            raise ValueError(f"images must be >= 1, got {images}")
        self.images = images
        self._recent: deque[Tensor] = deque()
        self._held = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: dict[str, Any], batch_idx: int) -> None:
        images = batch["image"].detach()
        self._recent.append(images)
        self._held += len(images)
        while self._held - len(self._recent[0]) >= self.images:
            self._held -= len(self._recent.popleft())

    def on_validation_epoch_start(self, trainer: pl.Trainer,
                                  pl_module: pl.LightningModule) -> None:
        # Only while fitting: a validation after fitting (train()'s evaluation after early
        # stopping, `kp eval`) scores the statistics the checkpoints hold.
        fitting = trainer.state.fn == TrainerFn.FITTING
        if not fitting or not self._recent or not pl_module.evaluating:
            return
        layers = [layer for layer in batch_norm_layers(pl_module) if layer.track_running_stats]
        if not layers:
            return
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the batches below
            layer.train()
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for images in self._recent:
                    pl_module(images)
        finally:
            for layer, momentum in zip(layers, momenta, strict=True):
                layer.momentum = momentum
                layer.eval()
