"""ASHA's rung decisions, recorded live by the sweep's scheduler.

The live scheduler (`RecordingASHA`) is Ray's own ASHA; it only writes down, at every rung a
trial reaches, the trial's value, the rung's cut-off at that moment and the verdict, so the
report can say which trial stopped at which rung and why (`benchmarks/asha_replay.py` feeds
recorded curves through it offline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from kp_platform.tune.experiment import RUNGS_FILE


@dataclass(frozen=True)
class RungDecision:
    """What ASHA decided when a trial reached a rung."""

    trial_id: str
    rung: int
    """The rung's epoch (a milestone of the bracket)."""
    value: float
    """The trial's metric at the rung (in the sweep's own sign, not ASHA's internal one)."""
    cutoff: float | None
    """The rung's cut-off before this trial was recorded; None: first trial at the rung."""
    stopped: bool


class RecordingASHA(AsyncHyperBandScheduler):
    """Ray's ASHA scheduler, unchanged, that also appends each rung decision to a file.

    Args:
        log_path: The JSON-lines file (`<experiment>/asha_rungs.jsonl`); None records nothing.
        **kwargs: As for `AsyncHyperBandScheduler`.
    """

    def __init__(self, *, log_path: str | Path | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._log_path = None if log_path is None else str(log_path)
        self.decisions: list[RungDecision] = []
        """Every rung decision so far, in order."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        rung = self._pending_rung(trial.trial_id, result)
        action = super().on_trial_result(tune_controller, trial, result)
        if rung is not None:
            milestone, cutoff = rung
            decision = RungDecision(
                trial_id=trial.trial_id, rung=milestone, value=float(result[self._metric]),
                cutoff=None if cutoff is None else float(self._metric_op * cutoff),
                stopped=action == TrialScheduler.STOP)
            self.decisions.append(decision)
            if self._log_path is not None:
                with open(self._log_path, "a") as log:
                    log.write(json.dumps(decision.__dict__) + "\n")
        return action

    def _pending_rung(self, trial_id: str, result: dict) -> tuple[int, float | None] | None:
        """The rung this result records the trial at, with its cut-off before it (or None).

        Mirrors `_Bracket.on_result`: the highest milestone reached that has not recorded the
        trial. A result at `max_t` ends the trial without a rung.
        """
        if self._time_attr not in result or self._metric not in result:
            return None
        epoch = result[self._time_attr]
        bracket = self._trial_info.get(trial_id)
        if bracket is None or (epoch >= self._max_t and self._stop_last_trials):
            return None
        for milestone, recorded in bracket._rungs:
            if epoch < milestone or trial_id in recorded:
                continue
            cutoff = bracket.cutoff(recorded)
            return int(milestone), None if cutoff is None else float(cutoff)
        return None


def read_rungs(experiment: str | Path) -> list[RungDecision]:
    """The live rung decisions of an experiment, in decision order (empty when none)."""
    path = Path(experiment) / RUNGS_FILE
    if not path.is_file():
        return []
    return [RungDecision(**json.loads(line)) for line in path.read_text().splitlines()
            if line.strip()]
