"""ASHA replayed offline: recorded AP curves fed through the sweep's own scheduler (Ray's ASHA,
`kp_platform.tune.driver.rungs.RecordingASHA`) in a simulated order, which answers "what would ASHA
have spent and found" without training anything (`bench_sweep_efficiency.py`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ray.tune.schedulers import TrialScheduler

from kp_platform.tune.driver.rungs import RecordingASHA
from kp_platform.tune.experiment import RungDecision


@dataclass(frozen=True)
class Replay:
    """The outcome of ASHA replayed on fully known curves."""

    stopped_at: dict[str, int]
    """Trial → the epoch ASHA stopped it at (trials run to the end are absent)."""
    epochs_spent: int
    """Trial-epochs trained under ASHA."""
    epochs_total: int
    """Trial-epochs without early stopping."""
    best: float
    """The best value any trial reported before it was stopped (ASHA's find)."""
    best_without_stopping: float
    decisions: list[RungDecision]

    @property
    def fraction(self) -> float:
        return self.epochs_spent / self.epochs_total if self.epochs_total else 0.0

    @property
    def regret(self) -> float:
        return self.best_without_stopping - self.best


def replay_asha(
    curves: Mapping[str, Mapping[int, float]],
    *,
    grace_period: int,
    reduction_factor: float,
    max_epochs: int,
    max_concurrent: int,
    order: Sequence[str] | None = None,
    epoch_seconds: Mapping[str, float] | None = None,
    mode: str = "max",
) -> Replay:
    """Runs Ray's ASHA on known curves, with trials started in `order` as slots free up.

    Time is simulated: each trial trains `epoch_seconds[trial]` per epoch (1 when not given),
    at most `max_concurrent` at once, and reports at the epochs its curve holds. Reports are
    handed to the scheduler in simulated time order, as the live Tune loop would.

    Args:
        curves: Trial → {epoch: metric} at every evaluation epoch, up to `max_epochs`.
        order: The start order (the order of `curves` when None).
        epoch_seconds: Per-trial seconds per epoch (a trial's own speed).

    Returns:
        What ASHA stopped, spent and found, against running every trial to the end.
    """
    scheduler = RecordingASHA(log_path=None, time_attr="epoch", metric="value", mode=mode,
                              grace_period=grace_period, reduction_factor=reduction_factor,
                              max_t=max_epochs)
    sign = 1.0 if mode == "max" else -1.0
    queue = list(order if order is not None else curves)
    speed = {t: (epoch_seconds or {}).get(t, 1.0) for t in queue}
    final_epoch = {t: max(e for e in c if e <= max_epochs) for t, c in curves.items()}
    events: list[tuple[float, int, str, int]] = []  # (time, tie-break, trial, epoch)
    counter = 0
    running = 0
    spent: dict[str, int] = {}
    stopped_at: dict[str, int] = {}
    best = -math.inf

    def start(trial_id: str, now: float) -> None:
        nonlocal counter, running
        scheduler.on_trial_add(None, TrialRef(trial_id))
        running += 1
        for epoch in sorted(e for e in curves[trial_id] if e <= max_epochs):
            counter += 1
            heapq.heappush(events, (now + epoch * speed[trial_id], counter, trial_id, epoch))

    now = 0.0
    while queue and running < max_concurrent:
        start(queue.pop(0), now)
    while events:
        now, _, trial_id, epoch = heapq.heappop(events)
        if trial_id in stopped_at:
            continue
        value = curves[trial_id][epoch]
        best = max(best, sign * value)
        spent[trial_id] = epoch
        action = scheduler.on_trial_result(None, TrialRef(trial_id), {"epoch": epoch,
                                                                    "value": value})
        last = epoch == final_epoch[trial_id]
        if action == TrialScheduler.STOP or last:
            # As Tune does for a trial that ends: the bracket sees its final result again.
            scheduler.on_trial_complete(None, TrialRef(trial_id), {"epoch": epoch,
                                                                 "value": value})
            if not last:
                stopped_at[trial_id] = epoch
            running -= 1
            if queue:
                start(queue.pop(0), now)
    total = sum(final_epoch.values())
    every = max(sign * v for c in curves.values() for e, v in c.items() if e <= max_epochs)
    return Replay(stopped_at=stopped_at, epochs_spent=sum(spent.values()), epochs_total=total,
                  best=sign * best, best_without_stopping=sign * every,
                  decisions=scheduler.decisions)


@dataclass(frozen=True)
class TrialRef:
    """What Ray's scheduler reads of a trial: its id (for feeding it recorded results)."""

    trial_id: str
