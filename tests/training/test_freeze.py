"""FreezeEncoder: the encoder keeps its starting weights while frozen, the rest trains."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from kp_platform.config import load_config
from kp_platform.models.module import KeypointModule
from kp_platform.training import read_checkpoint, train
from kp_platform.training.freeze import FreezeEncoder, encoder_parameters
from tests.conftest import tiny_config


def _parameters(checkpoint) -> dict[str, torch.Tensor]:
    """Trainable parameters only: BatchNorm running statistics are buffers and still adapt."""
    module = KeypointModule(*_hparams(checkpoint))
    names = {name for name, _ in module.named_parameters()}
    state = read_checkpoint(checkpoint)["state_dict"]
    return {name: state[name] for name in names}


def _hparams(checkpoint):
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    return hparams["config"], hparams["channel_names"]


def test_frozen_encoder_keeps_the_initial_weights(trained_run, synth_data, tmp_path):
    start = trained_run.best_checkpoint
    config = tiny_config(synth_data, tmp_path, "trainer.max_epochs=1", "optim.lr=0.05",
                         f"model.init_from={start}", "model.freeze_encoder_epochs=1",
                         "logging.wandb.mode=disabled")
    result = train(config)
    before, after = _parameters(start), _parameters(result.last_checkpoint)
    encoder = [n for n in before if n.startswith("network.backbone.down.")]
    rest = [n for n in before if n not in encoder]
    assert encoder and rest
    assert all(torch.equal(before[n], after[n]) for n in encoder)
    assert any(not torch.equal(before[n], after[n]) for n in rest)


def test_frozen_batchnorm_statistics_stay_as_loaded(trained_run, synth_data, tmp_path):
    start = trained_run.best_checkpoint

    def running_stats(checkpoint) -> dict[str, torch.Tensor]:
        state = read_checkpoint(checkpoint)["state_dict"]
        return {n: t for n, t in state.items() if n.endswith(("running_mean", "running_var"))}

    def fine_tune(frozen: bool, name: str) -> dict[str, torch.Tensor]:
        config = tiny_config(synth_data, tmp_path / name, "trainer.max_epochs=1",
                             f"model.init_from={start}", f"model.freeze_bn_stats={frozen}",
                             "logging.wandb.mode=disabled")
        return running_stats(train(config).last_checkpoint)

    before = running_stats(start)
    assert before
    frozen, adapted = fine_tune(True, "frozen"), fine_tune(False, "adapted")
    assert all(torch.equal(before[n], frozen[n]) for n in before)
    assert any(not torch.equal(before[n], adapted[n]) for n in before)


def test_the_encoder_thaws_after_the_frozen_epochs():
    module = KeypointModule.from_config(load_config(overrides=["model.backbone=unet_tiny"]),
                                        ["a"])
    callback = FreezeEncoder(2)
    for epoch, frozen in ((0, True), (1, True), (2, False), (0, True)):
        callback.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        flags = {p.requires_grad for p in encoder_parameters(module.network)}
        assert flags == {not frozen}
        assert all(p.requires_grad for p in module.network.head.parameters())


def test_without_a_decoder_the_whole_backbone_is_the_encoder():
    module = KeypointModule.from_config(
        load_config(overrides=["model.backbone=dilated_cnn_tiny"]), ["a"])
    assert len(list(encoder_parameters(module.network))) == len(
        list(module.network.backbone.parameters()))
