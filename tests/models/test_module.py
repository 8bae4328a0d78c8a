from __future__ import annotations

import pytest
import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.heatmaps import encode_heatmaps
from kp_platform.models.module import KeypointModule


def _batch(batch_size: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(batch_size, 3, 16, 24, generator=gen),
        "target_xy": torch.rand(batch_size, 2, 3, 2, generator=gen) * 16,
        "target_mask": torch.rand(batch_size, 2, 3, generator=gen) > 0.3,
    }


def test_targets_reuse_a_buffer_without_leaking_old_keypoints():
    config = apply_overrides(
        load_config(), ["model.backbone=unet_tiny", "heatmap.sigma=1.5", "heatmap.stride=1"]
    )
    module = KeypointModule.from_config(config, ["a", "b"])
    first = module.targets(_batch(4, 0))
    second_batch = _batch(4, 1)
    second = module.targets(second_batch)
    assert second.data_ptr() == first.data_ptr()  # the same memory, refilled
    fresh = encode_heatmaps(second_batch["target_xy"], second_batch["target_mask"], 16, 24, 1.5)
    assert torch.equal(second, fresh)
    smaller = module.targets(_batch(2, 2))  # a last, smaller batch gets its own buffer
    assert smaller.shape[0] == 2


def test_learning_rate_schedules():
    from kp_platform.models.module import _EpochSchedule

    cosine = _EpochSchedule("cosine", warmup=2, max_epochs=10)
    assert [cosine(e) for e in (0, 1)] == [1 / 3, 2 / 3]  # linear warm-up
    assert cosine(2) == 1.0 and cosine(6) == pytest.approx(0.5) and cosine(9) < 0.05
    step = _EpochSchedule("step", warmup=0, max_epochs=9)
    assert [step(e) for e in (0, 5, 6, 8)] == [1, 1, 0.1, 0.1]
    assert _EpochSchedule("none", 0, 5)(4) == 1.0


@pytest.mark.parametrize("optimizer, schedule", [("adam", "step"), ("adamw", "plateau")])
def test_optimizer_choices(optimizer, schedule):
    config = apply_overrides(load_config(), ["model.backbone=unet_tiny",
                                             f"optim.optimizer={optimizer}",
                                             f"optim.schedule={schedule}", "optim.lr=0.02",
                                             "trainer.max_epochs=20"])  # train() resolves auto
    setup = KeypointModule.from_config(config, ["a"]).configure_optimizers()
    expected = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    assert type(setup["optimizer"]) is expected
    assert setup["optimizer"].param_groups[0]["lr"] == 0.02
    if schedule == "plateau":
        assert setup["lr_scheduler"]["monitor"] == "val/loss"


def test_a_module_built_by_hand_with_auto_epochs_says_what_to_set():
    module = KeypointModule.from_config(
        apply_overrides(load_config(), ["model.backbone=unet_tiny"]), ["a"])
    with pytest.raises(ValueError, match="trainer.max_epochs is auto"):
        module.configure_optimizers()


def test_weak_peaks_are_scored_in_validation_but_not_predicted():
    # An early model: every peak well below eval.score_threshold (0.1), above the floor (0.01).
    config = apply_overrides(load_config(), ["model.backbone=unet_tiny", "heatmap.stride=1",
                                             "eval.thresholds=[2]"])
    module = KeypointModule.from_config(config, ["a"])
    heat = torch.full((1, 1, 16, 24), 0.001)
    heat[0, 0, 5, 7] = 0.05  # on the ground truth
    heat[0, 0, 12, 20] = 0.03  # a false positive, ranked lower
    logits = torch.logit(heat)
    validation = module.decode(logits)
    assert validation.valid.sum() == 2
    prediction = module.decode(logits, config.eval.score_threshold)
    assert prediction.valid.sum() == 0
    module.metric.update(validation.xy, validation.scores, validation.valid,
                         torch.tensor([[[[7.0, 5.0]]]]), torch.ones(1, 1, 1, dtype=torch.bool))
    assert module.metric.compute()["map"] == 1.0  # the one keypoint, found first
