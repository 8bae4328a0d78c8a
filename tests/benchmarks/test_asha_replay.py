"""ASHA replayed offline on known curves, through Ray's own scheduler (benchmarks/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from asha_replay import replay_asha  # noqa: E402  (a benchmark's module, not the package's)

# Four trials evaluated at epochs 2, 4, 6, 8; "good" is best everywhere, "late" starts weak
# and ends best of the rest.
CURVES = {
    "good": {2: 0.5, 4: 0.6, 6: 0.7, 8: 0.8},
    "poor": {2: 0.1, 4: 0.15, 6: 0.2, 8: 0.25},
    "fair": {2: 0.3, 4: 0.35, 6: 0.4, 8: 0.45},
    "late": {2: 0.05, 4: 0.3, 6: 0.6, 8: 0.75},
}


def test_one_at_a_time_asha_stops_what_falls_below_the_rung_cutoff():
    replay = replay_asha(CURVES, grace_period=2, reduction_factor=2, max_epochs=8,
                         max_concurrent=1, order=["good", "poor", "fair", "late"])
    # Rung 2 first holds good (0.5): poor (0.1) is below that cut-off and stops. fair (0.3)
    # meets the median of (0.5, 0.1), 0.3, goes on, and stops at rung 4 (0.35 < 0.6). late
    # (0.05) is below the median of (0.5, 0.1, 0.3), 0.3.
    assert replay.stopped_at == {"poor": 2, "fair": 4, "late": 2}
    assert replay.epochs_spent == 8 + 2 + 4 + 2
    assert replay.epochs_total == 32
    assert replay.fraction == pytest.approx(16 / 32)
    assert replay.best == replay.best_without_stopping == 0.8 and replay.regret == 0.0
    stops = [(d.trial_id, d.rung, d.cutoff) for d in replay.decisions if d.stopped]
    assert stops == [("poor", 2, 0.5), ("fair", 4, 0.6), ("late", 2, 0.3)]


def test_asha_that_stops_the_eventual_winner_has_regret():
    curves = {"a": CURVES["fair"], "b": CURVES["late"]}
    replay = replay_asha(curves, grace_period=2, reduction_factor=2, max_epochs=8,
                         max_concurrent=1)
    assert replay.stopped_at == {"b": 2}
    assert replay.best == 0.45 and replay.regret == pytest.approx(0.75 - 0.45)


def test_concurrent_trials_reach_the_rung_in_time_order():
    # Two slots: "slow" takes 4 s per epoch, so "fast" (done at 4 s) and "next" (started
    # then) reach rung 2 before it.
    curves = {"slow": {2: 0.2, 4: 0.9}, "fast": {2: 0.5, 4: 0.6}, "next": {2: 0.4, 4: 0.5}}
    replay = replay_asha(curves, grace_period=2, reduction_factor=2, max_epochs=4,
                         max_concurrent=2, epoch_seconds={"slow": 4.0, "fast": 1.0,
                                                          "next": 1.0})
    assert [d.trial_id for d in replay.decisions] == ["fast", "next", "slow"]
    assert replay.stopped_at == {"next": 2, "slow": 2}
    assert replay.regret == pytest.approx(0.9 - 0.6)
