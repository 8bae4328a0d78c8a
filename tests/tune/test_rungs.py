"""The rung records kept beside Ray's ASHA agree with the decisions Ray's ASHA takes."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from ray.tune.schedulers import TrialScheduler

from kp_platform.tune.driver.rungs import RecordingASHA, asha_cutoff, rung_milestones
from kp_platform.tune.experiment import read_rungs


@dataclass(frozen=True)
class Trial:
    trial_id: str


def test_milestones_and_cutoffs_follow_ray():
    assert rung_milestones(1, 4, 16) == [16, 4, 1]
    assert rung_milestones(2, 2, 8) == [8, 4, 2]
    assert asha_cutoff([], 2, "max") is None
    assert asha_cutoff([0.1, 0.5, 0.3], 2, "max") == pytest.approx(0.3)
    assert asha_cutoff([0.1, 0.5, 0.2, 0.4], 4, "max") == pytest.approx(0.425)
    assert asha_cutoff([0.1, 0.5, 0.2, 0.4], 4, "min") == pytest.approx(0.175)
    assert asha_cutoff([float("nan"), 0.2], 2, "max") == pytest.approx(0.2)


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("mode_via_tune", [False, True])
def test_every_recorded_verdict_is_the_one_its_cutoff_gives(tmp_path, mode, mode_via_tune):
    rng = random.Random(7)
    log = tmp_path / "asha_rungs.jsonl"
    properties = {} if mode_via_tune else {"metric": "value", "mode": mode}
    scheduler = RecordingASHA(log_path=log, time_attr="epoch", grace_period=1,
                              reduction_factor=2, max_t=8, **properties)
    if mode_via_tune:  # as the Tuner hands them over (TuneConfig's metric and mode)
        assert scheduler.set_search_properties("value", mode)
    trials = [Trial(f"t{i}") for i in range(12)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
        # Sparse evaluations skip rungs: a trial's final result then fills the lower rung.
        for epoch in range(rng.choice([1, 3]), 9, rng.choice([1, 2, 3])):
            action = scheduler.on_trial_result(None, trial, {"epoch": epoch,
                                                            "value": rng.random()})
            if action == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, trial, {"epoch": epoch, "value": rng.random()})
    decisions = read_rungs(tmp_path)
    assert decisions == scheduler.decisions and {d.rung for d in decisions} == {1, 2, 4}
    assert any(len(held) > len({d.trial_id for d in decisions if d.rung == rung})
               for rung, held in scheduler.rungs.items() if rung < 8)
    assert any(d.stopped for d in decisions) and not all(d.stopped for d in decisions)
    for d in decisions:
        worse = d.cutoff is not None and (d.value > d.cutoff if mode == "min"
                                          else d.value < d.cutoff)
        assert d.stopped == worse, d
