"""What `kp fit` decides, as pure functions of the data, the measured timing and the budget.

Each decision comes with a line saying why; `kp fit` prints them before it starts and the sweep
file it writes holds their outcome.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from kp_platform.config import Config
from kp_platform.config.auto import (
    eval_every_for,
    resolve_from_data,
    unet_depth_for,
)
from kp_platform.errors import InputError
from kp_platform.fit.budget import format_duration
from kp_platform.fit.inspect import DataFacts
from kp_platform.tune.driver.rungs import rung_milestones

MAX_INPUT_SIDE = 256
"""The network input's longer side at most: the default input (256²) on which the defaults were
measured on real frames (mirror-mouse, 396×406 images: benchmarks/RESULTS.md)."""
SIDE_MULTIPLE = 32
"""Input sides are multiples of this, so five down-samplings divide them exactly."""
MIN_TRIALS = 4
"""Fewer trials than this are not a search: the first trial is the defaults themselves."""
MIN_TRIAL_EPOCHS = 4
"""A budget that cannot train one run this long is refused: such a model has barely left its
initialisation."""
MANY_TRIALS = 16
"""From this many trials on, ASHA's rungs follow the many-trial rule (`schedule`)."""


@dataclass(frozen=True)
class Timing:
    """One trial's cost on the resources each trial gets, measured by `calibrate`."""

    startup_s: float
    """Seconds before the first epoch: the worker, imports, data caching, the model."""
    epoch_s: float
    """Seconds of one training epoch."""
    eval_s: float
    """Seconds of one evaluation on the validation split."""


@dataclass(frozen=True)
class Schedule:
    """ASHA's rungs, the evaluation period and the trial count for the budget."""

    max_epochs: int
    grace_period: int
    reduction_factor: int
    eval_every: int
    num_samples: int
    trial_s: float
    """Seconds of an average trial under these rungs (measured timing)."""
    reasons: list[str]


def input_size_for(facts: DataFacts) -> tuple[list[int], str]:
    """[height, width] for the network: the median image's aspect ratio, the longer side at most
    `MAX_INPUT_SIDE`, each side a multiple of `SIDE_MULTIPLE`."""
    height, width = facts.image_size
    scale = min(1.0, MAX_INPUT_SIDE / max(height, width))
    size = [max(SIDE_MULTIPLE, SIDE_MULTIPLE * round(side * scale / SIDE_MULTIPLE))
            for side in (height, width)]
    varied = ", sizes vary" if facts.sizes_vary else ""
    return size, (f"{size[0]}x{size[1]} (images {height}x{width} (median{varied}); the longer "
                  f"side at most {MAX_INPUT_SIDE}, sides multiples of {SIDE_MULTIPLE}, the "
                  "aspect ratio kept)")


def metric_for(facts: DataFacts) -> tuple[str, str, str]:
    """The sweep's metric and mode: the top-1 pixel error where every channel holds at most one
    keypoint per image (what DeepLabCut and Lightning Pose users compare), else `val/map`: what
    a run's `eval.best_by: auto` keeps its best checkpoint by (`resolve_from_data`)."""
    resolved, _ = resolve_from_data(Config(), facts.channels, facts.single_instance, facts.images)
    if resolved.eval.best_by == "mean_px_error":
        return "val/mean_px_error", "min", (
            "val/mean_px_error, lower is better (every channel holds at most one keypoint per "
            "image: the top-1 pixel error)")
    several = [c for c in facts.channels if c not in facts.single_instance]
    return "val/map", "max", (
        f"val/map, higher is better ({', '.join(several[:3])}{' ...' if len(several) > 3 else ''}"
        " hold several keypoints in some image: AP at the distance thresholds)")


def base_overrides(facts: DataFacts, input_size: list[int]) -> dict[str, Any]:
    """The base config's keys on top of the defaults: the data and what they decide. (The test
    set stays out: `kp fit` scores only the best checkpoint on it, after the sweep.) The
    validation split is the sweep's to decide (`search_val_fraction`)."""
    return {
        "data.train": str(facts.path.absolute()),
        "data.input_size": input_size,
        "data.flip_pairs": facts.flip_pairs,
    }


def search_space(input_size: list[int]) -> tuple[dict[str, Any], str]:
    """The built-in template around the defaults, the unet's depth scaled to the input."""
    depth = unet_depth_for(input_size)
    # At least 2 stages; at most the one whose bottleneck is still 2 cells or more.
    deepest = max(2, int(math.log2(min(input_size) / 2)))
    depths = [max(2, depth - 1), min(deepest, depth + 1)]
    space = {
        "optim.lr": {"loguniform": [1.0e-3, 1.0e-2]},
        "optim.weight_decay": {"loguniform": [1.0e-6, 1.0e-3]},
        "heatmap.sigma": {"uniform": [1.5, 3.0]},
        "model.width": {"choice": [8, 16]},
        "model.depth": {"int": depths} if depths[0] < depths[1] else {"choice": [depths[0]]},
    }
    return space, (f"learning rate 1e-3..1e-2, weight decay 1e-6..1e-3, sigma 1.5..3, width 8 "
                   f"or 16, unet depth {depths[0]}..{depths[1]} (the input's own: {depth}); the "
                   "first trial is the defaults")


def stopping_rungs(max_epochs: int, grace: int, factor: int) -> list[int]:
    """The epochs where ASHA can stop a trial, lowest first: its rungs (`rung_milestones`, Ray's
    layout) before `max_epochs`."""
    return sorted(int(m) for m in rung_milestones(grace, factor, max_epochs) if m < max_epochs)


def expected_epochs(max_epochs: int, grace: int, factor: int) -> float:
    """Epochs an average trial trains under ASHA: every trial reaches the first rung, one in
    `factor` goes on to the next, and so on up to `max_epochs`."""
    ends = [*stopping_rungs(max_epochs, grace, factor), max_epochs]
    return ends[0] + sum((ends[k] - ends[k - 1]) / factor**k for k in range(1, len(ends)))


def schedule(timing: Timing, seconds: float, slots: int, full_epochs: int) -> Schedule:
    """ASHA's rungs and the trial count that fill `seconds` on `slots` parallel trials.

    Trials are as long as a single run's default (`full_epochs`): on small real sets length
    matters most (mirror-mouse, `config/auto.py`: 160 optimiser steps left 32 px mean top-1
    error, 1000 steps 7-9 px), so a search of shorter trials loses to one run of the defaults.
    For many trials the rungs follow `benchmarks/bench_sweep_efficiency.py`: grace 1/16 of the
    length and reduction factor 4 trained 16-36% of a full sweep's trial-epochs and kept its
    best (40 trials); for a few, grace 1/4 and factor 2, as in the demo (rungs at 1/4 and 1/2).
    When fewer than `MIN_TRIALS` full-length trials fit (or one that goes the whole way would
    not end in time), the plan is the defaults alone: one trial (`num_samples` 1), which
    `kp fit` gives every slot's resources.

    Raises:
        InputError: not even one trial of `MIN_TRIAL_EPOCHS` fits; says the minimum.
    """
    every = eval_every_for(full_epochs)  # a full-length trial evaluates as a single run does
    per_epoch = timing.epoch_s + timing.eval_s / every
    whole = timing.startup_s + per_epoch * full_epochs  # a trial that goes the whole way
    why = [f"a trial: {timing.startup_s:.0f} s to start, {per_epoch:.1f} s an epoch (training "
           f"{timing.epoch_s:.1f} s, an evaluation {timing.eval_s:.1f} s every {every}); "
           f"{slots} at a time"]

    def plan(factor: int) -> Schedule:
        grace = _grace_period(full_epochs, every, factor)
        cost = timing.startup_s + per_epoch * expected_epochs(full_epochs, grace, factor)
        # The first trial on each slot meets no rival at its rungs (asynchronous ASHA compares
        # with the trials already there), so that first round runs whole (seen on mirror-mouse:
        # the first two trials of 19 planned went on to epoch 96 and 125); the average cost
        # applies to the trials after it.
        count = (slots + int(max(0.0, slots * (seconds - whole)) // cost) if whole <= seconds
                 else int(slots * seconds // whole))
        return Schedule(full_epochs, grace, factor, every, count, cost, why)

    many = plan(4)
    # Many trials: time for several rounds, so the few that go the whole way fit too.
    if many.num_samples >= MANY_TRIALS:
        return _explain(many, seconds, f"{many.num_samples} trials fit: the many-trial rungs "
                        f"(grace 1/16 of {full_epochs} epochs, factor 4)")
    few = plan(2)
    if few.num_samples >= MIN_TRIALS and whole <= seconds:
        return _explain(few, seconds, f"{few.num_samples} trials fit: the few-trial rungs "
                        "(grace 1/4, factor 2)")
    shortest = timing.startup_s + MIN_TRIAL_EPOCHS * per_epoch
    if shortest > seconds:
        raise InputError(
            f"the budget leaves {format_duration(seconds)} for training, too little for one "
            f"run of {MIN_TRIAL_EPOCHS} epochs ({format_duration(shortest)}, measured); give a "
            f"budget at least {format_duration(math.ceil(shortest - seconds))} longer",
            "--budget")
    # The sweep time at which `MIN_TRIALS` fit: a whole first round, then the rest on average.
    need = whole + max(0, MIN_TRIALS - slots) * few.trial_s / slots
    return dataclasses.replace(few, num_samples=1, trial_s=whole, reasons=[
        *why,
        f"fewer than {MIN_TRIALS} trials of the single run's {full_epochs} epochs fit in "
        f"{format_duration(seconds)} (one alone: {format_duration(whole)} on one slot), and "
        "shorter trials lose to one full-length run on small sets: the defaults alone, one "
        "trial with every slot's resources"
        + (", stopped at the time limit if it has not ended (the checkpoint it kept by its "
           "last evaluation is used, eval.keep; the last epochs of its cosine schedule change "
           "little)"
           if whole > seconds else "")
        + f"; a budget about {format_duration(need - seconds)} longer buys a search"])


def as_single_run(plan: Schedule, epochs: int, why_epochs: str) -> Schedule:
    """The defaults alone (`num_samples` 1) at a single run's length on its own split (a sweep
    of one trial keeps it, `search_val_fraction`): about as many optimiser steps as the
    planned trial, on more images an epoch, so the plan's timing still holds."""
    every = eval_every_for(epochs)
    return dataclasses.replace(
        plan, max_epochs=epochs, grace_period=_grace_period(epochs, every, 2), eval_every=every,
        reasons=[*plan.reasons, "with no trials to rank, the defaults hold out what a single "
                 f"`kp train` holds out (data.val_fraction auto): trainer.max_epochs = "
                 f"{why_epochs}"])


def _grace_period(full_epochs: int, every: int, factor: int) -> int:
    """ASHA's first rung: 1/16 of the length for the many-trial factor 4, else 1/4; a multiple
    of the evaluation period (every rung sees a fresh evaluation)."""
    grace = max(every, every * round(full_epochs / (16 if factor == 4 else 4) / every))
    return min(grace, full_epochs)


def _explain(plan: Schedule, seconds: float, why: str) -> Schedule:
    rungs = stopping_rungs(plan.max_epochs, plan.grace_period, plan.reduction_factor)
    return dataclasses.replace(plan, reasons=[
        *plan.reasons,
        f"{why}; {format_duration(seconds)} for the sweep",
        f"trials of at most {plan.max_epochs} epochs (a single run's length), rungs at epochs "
        f"{', '.join(map(str, rungs)) or 'none'}, an evaluation every {plan.eval_every}",
    ])
