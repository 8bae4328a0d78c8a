"""What a sweep prints while it runs: one line per event that matters, and Ray Tune's own status
table with only the sweep's metric, the epoch and the sampled parameters.

Tune's table comes from its `CLIReporter` (its public columns settings), printed when the sweep
ends and, in a long sweep, every `TABLE_EVERY_S` before that (not at the start, when it lists
only pending trials whose values the event lines give anyway). That reporter belongs to Tune's
classic output engine: the newer one (Ray's default) has no column settings and prints every
config key of every trial, so the driver selects the classic one (`RAY_AIR_NEW_OUTPUT=0`,
Ray's switch). The events (a trial started with its sampled values, evaluated, stopped by ASHA
at a rung, completed, failed, ended by the sweep's time budget) come from a Tune `Callback`.
The full logs stay in the experiment folder.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ray.tune import Callback, CLIReporter

from kp_platform.tune.experiment import RungDecision
from kp_platform.tune.spec.space import SweepSpec

TABLE_EVERY_S = 600
"""Tune's status table this often while the sweep runs (and at its end)."""


def use_classic_output() -> None:
    """Selects Tune's classic output engine, the one that honours a reporter's columns."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


class EndOfSweepReporter(CLIReporter):
    """Tune's `CLIReporter` that prints at the sweep's end and every `TABLE_EVERY_S` before it,
    through the reporter's public `should_report` hook; the table itself is CLIReporter's."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._table_due = time.monotonic() + TABLE_EVERY_S

    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        """Tune's setup without the sweep's metric and mode: with them the table starts with
        a "Current best trial" line, which looks up every parameter column in the best trial's
        config and raises KeyError (Tune 2.60) when that trial did not sample a conditional
        parameter (`when:`). The sweep's summary names its best trial instead."""
        super().setup(start_time=start_time, total_samples=total_samples, **kwargs)

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        """Tune's table without the system lines Tune passes (the scheduler's brackets and the
        resources in use): the event lines and `kp sweep report` say what they would, in the
        sweep's terms."""
        super().report(trials, done)

    def should_report(self, trials: list, done: bool = False) -> bool:
        if done:
            return True
        if time.monotonic() < self._table_due:
            return False
        self._table_due = time.monotonic() + TABLE_EVERY_S
        return True


def build_reporter(spec: SweepSpec) -> CLIReporter:
    """Tune's status table: trial, status, the sampled parameters, the metric and the epoch, in
    the order the trials started (`kp sweep report` ranks them)."""
    return EndOfSweepReporter(
        metric_columns={spec.metric: spec.metric, "epoch": "epoch"},
        parameter_columns={p.key: short_name(p.key) for p in spec.parameters},
        # Not sorted by the metric: Tune's sort fails on a finished trial that never reported it
        # (one that a sweep's time_budget_s stopped before its first evaluation).
        sort_by_metric=False,
        max_progress_rows=max(20, spec.num_samples), max_column_length=16,
        # Stated, not left to Tune: unset, it follows the process's verbosity when the reporter
        # is built, which an earlier sweep in the same process has lowered to 1 (no tables).
        print_intermediate_tables=True)


def short_name(key: str) -> str:
    """`optim.lr` -> `lr`: the last part of a dotted key."""
    return key.rsplit(".", 1)[-1]


class SweepEvents(Callback):
    """One line per trial event on stdout (the evaluation at which ASHA stops a trial is told
    once, by the stop line).

    Args:
        spec: The sweep (its metric and parameters).
        scheduler: The sweep's scheduler; its `decisions` (`RecordingASHA`) tell a trial that
            ASHA stopped from one that completed.
    """

    def __init__(self, spec: SweepSpec, scheduler: Any = None) -> None:
        self.metric = spec.metric
        self.keys = [p.key for p in spec.parameters]
        self.scheduler = scheduler
        self._completed: set[str] = set()  # trials whose completion (or ASHA stop) was told

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        values = ", ".join(f"{short_name(k)}={_show(trial.config[k])}" for k in self.keys
                           if k in trial.config)
        self._say(f"trial {trial.trial_id} started" + (f": {values}" if values else ""))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        # Tune asks the scheduler before it calls back, so the evaluation that got a trial
        # stopped already has its decision: the stop line that follows gives the same epoch
        # and value (a stopped trial reports nothing after).
        if self.metric in result and self._stop(trial.trial_id) is None:
            self._say(f"trial {trial.trial_id} epoch {result.get('epoch', '?')}: "
                      f"{self.metric} {_show(result[self.metric])}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._completed.add(trial.trial_id)
        stop = self._stop(trial.trial_id)
        if stop is None:
            self._say(f"trial {trial.trial_id} completed")
        else:
            self._say(f"trial {trial.trial_id} stopped by ASHA at epoch {stop.rung}: "
                      f"{self.metric} {_show(stop.value)} against the rung's cut-off "
                      f"{_show(stop.cutoff)}")

    def _stop(self, trial_id: str) -> RungDecision | None:
        """The rung decision that stopped the trial, or None."""
        return next((d for d in getattr(self.scheduler, "decisions", [])
                     if d.trial_id == trial_id and d.stopped), None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"trial {trial.trial_id} failed (the sweep names the error at the end; the "
                  f"traceback is in {trial.path}/error.txt)")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Tune ends the trials it finds running at the sweep's time budget without calling
        # on_trial_complete for them: they are told here, with the evaluation they keep (a
        # trial reports only at evaluations, so its last result is the last one).
        for trial in trials:
            if trial.trial_id in self._completed or trial.status != "TERMINATED":
                continue
            last = trial.last_result or {}
            kept = (f" at epoch {last.get('epoch', '?')}: {self.metric} {_show(last[self.metric])}"
                    if self.metric in last else " before its first evaluation")
            self._say(f"trial {trial.trial_id} ended by the sweep's time budget{kept}")

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stdout, flush=True)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
