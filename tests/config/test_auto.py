"""`auto` defaults: resolved from the config and the training data, printed, never stored."""

from __future__ import annotations

from kp_platform.config import apply_overrides, load_config
from kp_platform.config.auto import (
    DEFAULT_DEPTH,
    MIN_EPOCHS,
    TARGET_STEPS,
    default_augmentation,
    resolve_auto,
    resolve_from_data,
    unet_depth_for,
    val_fraction_for,
)


def test_small_sets_train_for_steps_and_large_ones_for_at_least_twenty_epochs():
    config = load_config()  # batch 8
    small, chosen = resolve_from_data(config, ["a"], ["a"], train_images=58)
    assert small.trainer.max_epochs == -(-TARGET_STEPS // 8) == 125  # 8 steps an epoch
    assert small.eval.eval_every == 6 and "1000 steps in all" in chosen["trainer.max_epochs"]
    large, _ = resolve_from_data(config, ["a"], ["a"], train_images=5000)
    assert large.trainer.max_epochs == MIN_EPOCHS and large.eval.eval_every == 1
    fixed, chosen = resolve_from_data(
        apply_overrides(config, ["trainer.max_epochs=7", "eval.eval_every=2"]), ["a"], ["a"], 58)
    assert (fixed.trainer.max_epochs, fixed.eval.eval_every) == (7, 2)
    assert "trainer.max_epochs" not in chosen and "eval.eval_every" not in chosen


def test_top1_channels_and_the_best_checkpoint_metric_follow_the_data():
    every, _ = resolve_from_data(load_config(), ["a", "b"], ["a", "b"], 10)
    assert every.eval.top1_channels == ["a", "b"] and every.eval.best_by == "mean_px_error"
    mixed, chosen = resolve_from_data(load_config(), ["a", "b"], ["a"], 10)
    assert mixed.eval.top1_channels == ["a"] and mixed.eval.best_by == "map"
    assert chosen["eval.best_by"].startswith("map (")


def test_flips_join_the_augmentation_only_with_flip_pairs():
    assert [t["name"] for t in default_augmentation([])] == ["Affine"]
    assert [t["name"] for t in default_augmentation([["l", "r"]])] == ["Affine", "HorizontalFlip"]
    resolved, chosen = resolve_auto(load_config())
    assert resolved.data.augment == default_augmentation([])
    assert "no flip" in chosen["data.augment"]


def test_the_unet_is_deep_enough_for_a_bottleneck_of_at_most_eight_cells():
    assert [unet_depth_for([s, s]) for s in (64, 128, 256, 512)] == [3, 4, 5, 6]
    assert unet_depth_for([256, 400]) == 5  # the shorter side counts
    resolved, chosen = resolve_auto(load_config())  # 256x256, unet
    assert resolved.model.depth == 5 and chosen["model.depth"].startswith("5 (input 256x256")
    dilated, chosen = resolve_auto(apply_overrides(load_config(), ["model.backbone=dilated_cnn"]))
    assert dilated.model.depth == DEFAULT_DEPTH and "dilated_cnn" in chosen["model.depth"]
    fixed, chosen = resolve_auto(apply_overrides(load_config(), ["model.depth=3"]))
    assert fixed.model.depth == 3 and "model.depth" not in chosen


def test_small_sets_hold_out_less_and_keep_the_final_weights():
    # 20% unless that is under 100 images; a setting is kept as it is
    assert [val_fraction_for("auto", n) for n in (72, 497, 498, 5000)] == [0.05, 0.05, 0.2, 0.2]
    assert val_fraction_for(0.3, 72) == 0.3
    small, chosen = resolve_from_data(load_config(), ["a"], ["a"], 68, val_images=4,
                                      split_fraction=0.05)
    assert small.data.val_fraction == 0.05 and small.eval.keep == "final"
    assert "20% would hold out fewer than 100" in chosen["data.val_fraction"]
    assert chosen["eval.keep"].startswith("final (a validation set of 4 images")
    large, chosen = resolve_from_data(load_config(), ["a"], ["a"], 400, val_images=100,
                                      split_fraction=0.2)
    assert large.data.val_fraction == 0.2 and large.eval.keep == "best"
    # a validation file of its own: nothing was split, val_fraction stays unused
    own, chosen = resolve_from_data(load_config(), ["a"], ["a"], 400, val_images=40)
    assert own.data.val_fraction == "auto" and own.eval.keep == "final"
    assert "data.val_fraction" not in chosen
    fixed, chosen = resolve_from_data(apply_overrides(load_config(), ["eval.keep=best"]),
                                      ["a"], ["a"], 68, val_images=4, split_fraction=0.05)
    assert fixed.eval.keep == "best" and "eval.keep" not in chosen
