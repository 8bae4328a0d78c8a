"""PreciseBatchNorm: evaluations see BatchNorm statistics of the current weights on the latest
training images, not the running averages of past steps."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from kp_platform.training.precise_bn import PreciseBatchNorm


class ConvThenNorm(pl.LightningModule):
    """A conv whose weights change fast (SGD, lr 0.5) feeding a BatchNorm; every validation
    epoch evaluates. Records the BatchNorm's state seen by the first validation step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.evaluating = True
        self.seen: list[dict] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(images))

    def training_step(self, batch, batch_idx):
        return (self(batch["image"]) - 3.0).square().mean() + self.conv.weight.square().sum()

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append({"training": self.norm.training, "momentum": self.norm.momentum,
                              "mean": self.norm.running_mean.clone(),
                              "var": self.norm.running_var.clone(),
                              "weight": self.conv.weight.detach().clone(),
                              "bias": self.conv.bias.detach().clone()})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _batches(count: int, size: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    # Each batch from its own distribution: the running averages of a few steps ago differ.
    return [{"image": torch.rand(size, 3, 6, 6, generator=generator) * (1 + index)}
            for index in range(count)]


def _fit(callbacks: list[pl.Callback], train: list[dict], epochs: int = 2,
         evaluating: bool = True) -> ConvThenNorm:
    module = ConvThenNorm()
    module.evaluating = evaluating
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    validation = [{"image": torch.rand(2, 3, 6, 6)}]
    trainer.fit(module, DataLoader(train, batch_size=None),
                DataLoader(validation, batch_size=None))
    return module


def _statistics(state: dict, images: list[torch.Tensor]):
    """The mean and the average unbiased batch variance of the conv's output, with the weights
    the evaluation saw, over the given batches."""
    means, variances = [], []
    for batch in images:
        out = nn.functional.conv2d(batch, state["weight"], state["bias"], padding=1)
        means.append(out.mean(dim=(0, 2, 3)))
        variances.append(out.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True))
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


def test_evaluation_uses_statistics_of_the_current_weights_on_the_latest_images():
    train = _batches(count=5, size=4)
    module = _fit([PreciseBatchNorm(images=8)], train)
    assert len(module.seen) == 2
    for state in module.seen:
        # The latest two batches (8 images), the weights as they are at the evaluation.
        mean, var = _statistics(state, [b["image"] for b in train[-2:]])
        assert torch.allclose(state["mean"], mean, atol=1e-5)
        assert torch.allclose(state["var"], var, atol=1e-5)
        assert state["training"] is False and state["momentum"] == 0.1
    assert module.seen[0]["weight"].ne(module.seen[1]["weight"]).any()


def test_without_it_the_evaluation_sees_the_lagging_running_averages():
    # The control: the test above must be able to fail.
    train = _batches(count=5, size=4)
    state = _fit([], train).seen[-1]
    mean, _ = _statistics(state, [b["image"] for b in train[-2:]])
    assert not torch.allclose(state["mean"], mean, atol=1e-2)


def test_only_evaluating_epochs_recompute():
    train = _batches(count=3, size=4)
    state = _fit([PreciseBatchNorm(images=4)], train, epochs=1, evaluating=False).seen[0]
    mean, _ = _statistics(state, [train[-1]["image"]])
    assert not torch.allclose(state["mean"], mean, atol=1e-2)


def test_image_count_must_be_positive():
    with pytest.raises(ValueError, match="images must be >= 1"):
        PreciseBatchNorm(images=0)
