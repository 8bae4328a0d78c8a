"""`kp fit`'s decisions as pure functions: budgets, flip pairs, input size, metric, rungs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kp_platform.errors import InputError
from kp_platform.fit import format_duration, parse_duration
from kp_platform.fit.inspect import DataFacts, flip_pairs_from_names
from kp_platform.fit.plan import (
    MIN_TRIALS,
    Timing,
    expected_epochs,
    input_size_for,
    metric_for,
    schedule,
    search_space,
)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("20m", 1200), ("1h30m", 5400),
                                           ("1.5h", 5400), ("45", 45), (" 2m30s ", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "20", "m", "20x", "30m1h", "1h1h", "-5", "0s", "1h 30m"])
def test_bad_durations_are_one_line_errors(text):
    if text == "20":  # a plain number is seconds
        assert parse_duration(text) == 20
        return
    with pytest.raises(InputError) as caught:
        parse_duration(text)
    assert "--budget" in str(caught.value) and "\n" not in str(caught.value)


def test_format_duration():
    assert [format_duration(s) for s in (45, 150, 3900)] == ["45s", "2m30s", "1h05m"]


def test_flip_pairs_come_only_from_clear_left_right_words():
    names = ["sleeve_left", "sleeve_right", "leftEar", "rightEar", "L_paw", "R_paw",
             "paw1LH_top", "paw4RH_top", "shirt.left_cuff", "shirt.right_cuff", "left_only"]
    assert flip_pairs_from_names(names) == [
        ["sleeve_left", "sleeve_right"], ["leftEar", "rightEar"], ["L_paw", "R_paw"],
        ["shirt.left_cuff", "shirt.right_cuff"]]


def _facts(size=(406, 396), per_image=None, varied=False) -> DataFacts:
    per_image = per_image or {"a": 1, "b": 1}
    return DataFacts(path=Path("t.json"), images=72, image_size=size, sizes_vary=varied,
                     channels=list(per_image), max_per_image=per_image, keypoints=100,
                     flip_pairs=[])


def test_input_size_keeps_the_aspect_ratio_in_multiples_of_32():
    assert input_size_for(_facts((480, 640)))[0] == [192, 256]
    assert input_size_for(_facts((406, 396)))[0] == [256, 256]
    assert input_size_for(_facts((100, 60)))[0] == [96, 64]  # small images are not enlarged
    assert "sizes vary" in input_size_for(_facts((480, 640), varied=True))[1]


def test_metric_is_the_top1_error_only_when_every_channel_is_single_instance():
    assert metric_for(_facts())[:2] == ("val/mean_px_error", "min")
    metric, mode, why = metric_for(_facts(per_image={"a": 1, "corner": 4}))
    assert (metric, mode) == ("val/map", "max") and "corner" in why


def test_the_space_scales_the_unet_depth_with_the_input():
    assert search_space([256, 256])[0]["model.depth"] == {"int": [4, 6]}
    assert search_space([32, 32])[0]["model.depth"] == {"int": [2, 3]}  # never below 2


def test_expected_epochs_under_asha():
    assert expected_epochs(16, 4, 2) == 4 + 4 / 2 + 8 / 4  # rungs 4, 8; the end 16
    assert expected_epochs(10, 10, 2) == 10  # no rung before the end
    assert expected_epochs(64, 4, 4) == 4 + 12 / 4 + 48 / 16


TIMING = Timing(startup_s=10.0, epoch_s=2.0, eval_s=1.0)


def test_a_large_budget_gets_many_trials_and_the_many_trial_rungs():
    plan = schedule(TIMING, seconds=3600, slots=2, full_epochs=40)
    assert plan.reduction_factor == 4 and plan.num_samples >= 16
    assert plan.max_epochs == 40 and plan.grace_period % plan.eval_every == 0
    # A first round of whole trials (one per slot: no rival at their rungs), then trials of
    # the average cost fill the time on the slots, and one more would not.
    whole = TIMING.startup_s + 40 * (TIMING.epoch_s + TIMING.eval_s / plan.eval_every)
    rest = 2 * (3600 - whole)
    assert (plan.num_samples - 2) * plan.trial_s <= rest < (plan.num_samples - 1) * plan.trial_s


def test_a_small_budget_gets_few_trials_with_the_few_trial_rungs():
    plan = schedule(TIMING, seconds=240, slots=2, full_epochs=40)
    assert plan.reduction_factor == 2 and MIN_TRIALS <= plan.num_samples < 16
    assert plan.max_epochs == 40


def test_a_budget_too_short_for_a_search_runs_the_defaults_alone_at_full_length():
    plan = schedule(TIMING, seconds=100, slots=2, full_epochs=40)
    assert plan.num_samples == 1 and plan.max_epochs == 40
    assert any("the defaults alone" in line and "stopped at the time limit" in line
               for line in plan.reasons)
    # Trials are never shortened below the single run's length.
    for seconds in (60, 100, 130, 150, 400, 3600):
        assert schedule(TIMING, seconds=seconds, slots=2, full_epochs=40).max_epochs == 40


def test_the_defaults_alone_hold_out_what_a_single_run_holds_out():
    from kp_platform.config import Config, apply_overrides
    from kp_platform.config.auto import search_val_fraction
    from kp_platform.fit.plan import as_single_run, base_overrides

    # The split is the sweep's rule (tests/tune/test_space.py): 20% where trials are ranked,
    # the single run's `auto` for the defaults alone; kp fit's base leaves it to that rule.
    base = apply_overrides(Config(), base_overrides(_facts(), [256, 256]))
    assert base.data.val_fraction == "auto"
    assert search_val_fraction(base, ranking=True) == 0.2
    assert search_val_fraction(base, ranking=False) == "auto"
    # Its length: the single run's epochs on that split, evaluated about 20 times.
    plan = as_single_run(schedule(TIMING, seconds=100, slots=2, full_epochs=125), 112,
                         "112 (68 training images)")
    assert (plan.num_samples, plan.max_epochs, plan.eval_every) == (1, 112, 6)
    assert plan.grace_period % plan.eval_every == 0 and plan.grace_period <= 112
    assert "data.val_fraction auto" in plan.reasons[-1] and "112 (68" in plan.reasons[-1]


def test_the_defaults_alone_say_how_much_longer_a_search_needs():
    plan = schedule(TIMING, seconds=130, slots=2, full_epochs=40)
    assert plan.num_samples == 1
    extra = parse_duration(plan.reasons[-1].split("a budget about ")[1].split(" longer")[0])
    assert extra > 0
    assert schedule(TIMING, seconds=130 + extra + 1, slots=2, full_epochs=40).num_samples >= 4


def test_a_budget_too_small_says_the_minimum():
    with pytest.raises(InputError) as caught:
        schedule(TIMING, seconds=15, slots=2, full_epochs=40)
    message = str(caught.value)
    assert message.startswith("--budget: ") and "at least" in message and "longer" in message
    # The minimum it names is enough: that much more time plans a run.
    extra = parse_duration(message.split("at least ")[1].split(" longer")[0])
    assert schedule(TIMING, seconds=15 + extra, slots=2, full_epochs=40).num_samples >= 1
