"""Fine-tuning helpers (Lightning callbacks): a frozen encoder, frozen BatchNorm statistics.

A randomly initialised decoder and head, or ones trained on another domain, send large, noisy
gradients through the encoder during the first steps on a small real set and wash out the
pretrained features; training the top first and the whole network afterwards avoids that.
BatchNorm running statistics re-estimated from a few dozen images can also hurt more than they
adapt (measured in the README's pipeline section), so they can be kept as loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
from torch import nn

from kp_platform.models.layers import batch_norm_layers


def encoder_parameters(network: nn.Module) -> Iterator[nn.Parameter]:
    """The encoder's parameters of a `KeypointNet`.

    The encoder is `backbone.encoder` (timm encoders), else `backbone.down` (the U-Net's
    contracting path), else the whole backbone (a network without a decoder, such as
    `dilated_cnn`: only the head trains while frozen).
    """
    backbone = network.backbone
    for name in ("encoder", "down"):
        part = getattr(backbone, name, None)
        if isinstance(part, nn.Module):
            return part.parameters()
    return backbone.parameters()


class FreezeEncoder(pl.Callback):
    """Trains only the decoder and head during the first `epochs` epochs.

    Frozen parameters get no gradient, so the optimizer skips them (weight decay included) and
    they keep the pretrained values exactly. BatchNorm statistics still follow the new data
    (unless `FreezeBatchNormStats` keeps them too).

    Args:
        epochs: Epochs (from 0) during which the encoder is frozen; 0 never freezes.
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Decided per epoch (not once at fit start) so a resumed run lands in the right phase.
        frozen = trainer.current_epoch < self.epochs
        for parameter in encoder_parameters(pl_module.network):
            parameter.requires_grad_(not frozen)


class FreezeBatchNormStats(pl.Callback):
    """Keeps every BatchNorm layer in eval mode while training: its running mean and variance
    stay as loaded and normalise each batch; its weight and bias still train."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        # Per batch, not once: Lightning sets modules' training modes itself (when fitting
        # starts, around each validation run), which would bring BatchNorm back to train mode.
        for layer in batch_norm_layers(pl_module):
            layer.eval()
