"""ASHA's rung decisions, recorded live by the sweep's scheduler.

The live scheduler (`RecordingASHA`) is Ray's own ASHA, deciding as before; beside it, from the
results Tune hands it (public scheduler hooks only), it keeps which trial reached which rung with
which value, and writes down at every rung the trial's value, the rung's cut-off at that moment
and the verdict, so the report can say which trial stopped at which rung and why
(`benchmarks/asha_replay.py` feeds recorded curves through it offline).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from kp_platform.tune.experiment import RungDecision


def asha_cutoff(values: list[float], reduction_factor: float, mode: str) -> float | None:
    """ASHA's cut-off over the values a rung holds, in the metric's own sign: the trial must
    reach the (1 - 1/rf) quantile (mode max), or stay under the 1/rf quantile (mode min),
    linearly interpolated and ignoring NaN (Ray's `_Bracket.cutoff`); None for no values."""
    if not values:
        return None
    share = 1 / reduction_factor if mode == "min" else 1 - 1 / reduction_factor
    return float(np.nanpercentile(values, share * 100))


def rung_milestones(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The epochs of a one-bracket ASHA's rungs, highest first (Ray's `_Bracket` layout)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in reversed(range(count))]


class RecordingASHA(AsyncHyperBandScheduler):
    """Ray's ASHA scheduler (one bracket), unchanged, that also appends each rung decision to a
    file.

    Args:
        log_path: The JSON-lines file (`<experiment>/asha_rungs.jsonl`); None records nothing.
        **kwargs: As for `AsyncHyperBandScheduler` (`brackets` stays 1).
    """

    def __init__(self, *, log_path: str | Path | None, time_attr: str = "training_iteration",
                 metric: str | None = None, mode: str | None = None, grace_period: float = 1,
                 reduction_factor: float = 4, max_t: float = 100, stop_last_trials: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(time_attr=time_attr, metric=metric, mode=mode, grace_period=grace_period,
                         reduction_factor=reduction_factor, max_t=max_t,
                         stop_last_trials=stop_last_trials, **kwargs)
        self.log_path = None if log_path is None else str(log_path)
        self.time_attr, self.sweep_mode = time_attr, mode  # `metric`: Ray's public property
        self.reduction_factor, self.max_t = reduction_factor, max_t
        self.stop_last_trials = stop_last_trials
        self.rungs: dict[float, dict[str, float]] = {
            m: {} for m in rung_milestones(grace_period, reduction_factor, max_t)}
        """Milestone (highest first) → trial → the value it reached the rung with."""
        self.decisions: list[RungDecision] = []
        """Every rung decision so far, in order."""

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        accepted = super().set_search_properties(metric, mode, **spec)
        if accepted and mode:
            self.sweep_mode = mode
        return accepted

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        rung = None
        if self._counts(result) and not (
                result[self.time_attr] >= self.max_t and self.stop_last_trials):
            rung = self._record(trial.trial_id, result)
        action = super().on_trial_result(tune_controller, trial, result)
        if rung is not None:
            milestone, cutoff = rung
            decision = RungDecision(
                trial_id=trial.trial_id, rung=int(milestone),
                value=float(result[self.metric]), cutoff=cutoff,
                stopped=action == TrialScheduler.STOP)
            self.decisions.append(decision)
            if self.log_path is not None:
                with open(self.log_path, "a") as log:
                    log.write(json.dumps(decision.__dict__) + "\n")
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if self._counts(result):
            self._record(trial.trial_id, result)  # Ray's bracket records a final result too
        super().on_trial_complete(tune_controller, trial, result)

    def _counts(self, result: dict) -> bool:
        return self.time_attr in result and self.metric in result

    def _record(self, trial_id: str, result: dict) -> tuple[float, float | None] | None:
        """Records the result at the rung Ray's bracket records it at (the highest milestone
        reached that does not yet hold the trial); returns the milestone and its cut-off
        before it, or None (no rung)."""
        epoch = result[self.time_attr]
        for milestone, held in self.rungs.items():
            if epoch >= milestone and trial_id in held and not self.stop_last_trials:
                return None
            if epoch < milestone or trial_id in held:
                continue
            cutoff = asha_cutoff(list(held.values()), self.reduction_factor, str(self.sweep_mode))
            held[trial_id] = float(result[self.metric])
            return milestone, cutoff
        return None
