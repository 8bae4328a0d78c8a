"""Parameter importances over a sweep's trials, pruned ones included."""

from __future__ import annotations

import optuna

from kp_platform.tune.results.importance import format_importances, parameter_importances
from kp_platform.tune.results.report import TrialRow


def _trials(count, complete):
    """Trials whose AP at epoch 2 is driven by `lr` alone; `noise` does nothing."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rows, frozen = [], {}
    for i in range(count):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.0, 1.0),
                           "noise": optuna.distributions.FloatDistribution(0.0, 1.0)})
        value = trial.params["lr"]
        state = "COMPLETE" if i < complete else "PRUNED"
        curve = [(2, value), (4, value)] if state == "COMPLETE" else [(2, value)]
        study.tell(trial, value if state == "COMPLETE" else None,
                   state=optuna.trial.TrialState[state])
        rows.append(TrialRow(trial_id=f"t{i}", status="", values=trial.params, best=value,
                             epochs=curve[-1][0], curve=curve, optuna_state=state))
        frozen[f"t{i}"] = study.trials[-1]
    return rows, frozen


def test_pruned_trials_count_through_their_first_rung_value():
    rows, frozen = _trials(10, complete=2)
    importances = parameter_importances(rows, frozen, "val/map")
    assert importances.target == "val/map at epoch 2 (10 trials)"
    assert list(importances.values) == ["lr", "noise"]
    assert importances.values["lr"] > 0.8
    assert "lr" in format_importances(importances).splitlines()[1]


def test_enough_completed_trials_use_the_final_value():
    rows, frozen = _trials(6, complete=5)
    assert parameter_importances(rows, frozen, "val/map").target == (
        "final val/map (5 completed trials)")


def test_too_few_trials_say_so():
    rows, frozen = _trials(3, complete=3)
    assert parameter_importances(rows, frozen, "val/map") is None
    assert "too few trials" in format_importances(None)
