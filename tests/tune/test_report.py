"""Report statuses follow the sweep's scheduler, ASHA's recorded decisions and its time budget."""

from __future__ import annotations

from types import SimpleNamespace

from kp_platform.tune import load_space
from kp_platform.tune.driver.runner import _settings_text
from kp_platform.tune.experiment import SPACE_COPY
from kp_platform.tune.results.report import _max_epochs, _status, saved_settings
from tests.tune.conftest import space_data, write_space


def test_a_trial_that_ended_early_is_named_by_what_stopped_it(tmp_path):
    trial = SimpleNamespace(status="TERMINATED", path=str(tmp_path))
    assert _status(trial, 2, 4, "stopped (ASHA)") == "stopped (ASHA)"
    assert _status(trial, 2, 4, "stopped (time budget)") == "stopped (time budget)"
    assert _status(trial, 4, 4, "stopped (ASHA)") == "completed"
    assert _status(trial, 0, 0, "stopped (time budget)") == "stopped (time budget)"  # never ran
    assert _status(SimpleNamespace(status="ERROR"), 2, 4, "stopped") == "errored"
    # without the settings copy: the trial's own config
    (tmp_path / "config.yaml").write_text("trainer: {max_epochs: 4}\n")
    assert _max_epochs(trial) == 4 and _max_epochs(SimpleNamespace(path="/nowhere")) == 0


def test_the_settings_are_read_back_from_the_experiment(tmp_path):
    assert saved_settings(tmp_path) == {}  # experiments from before the copy: ASHA
    for scheduler in ("asha", "fifo"):
        data = space_data(None, tmp_path / "sweeps", scheduler=scheduler, time_budget_s=60)
        spec = load_space(write_space(tmp_path / f"{scheduler}.yaml", data))
        (tmp_path / SPACE_COPY).write_text(_settings_text(spec))
        assert saved_settings(tmp_path).get("scheduler", "asha") == scheduler
        assert saved_settings(tmp_path)["time_budget_s"] == 60


def _rows(values_by_trial, base="b"):
    from kp_platform.tune.results.report import TrialRow, _best

    return [TrialRow(trial_id=t, status="completed", values={}, epochs=len(v), base=t == base,
                     best=_best(v, "min"), curve=list(enumerate(v, 1)))
            for t, v in values_by_trial.items()]


def test_a_minimised_metric_is_reported_as_lower_is_better():
    from kp_platform.tune.results.report import format_base_vs_best, format_rungs, rung_cutoffs

    rows = _rows({"b": [30.0, 12.0], "t": [20.0, 6.5]})
    assert [row.best for row in rows] == [12.0, 6.5]  # each trial's lowest error
    line = format_base_vs_best(rows, "val/mean_px_error", "min")
    assert "sweep best val/mean_px_error: 6.5000 (trial t)" in line
    assert "beats its base config (val/mean_px_error -5.5000)" in line
    worse = format_base_vs_best(_rows({"b": [5.0], "t": [9.0]}), "val/mean_px_error", "min")
    assert "no trial beat the base config" in worse
    # rf 2: the rung keeps the lower half; the cut-off is the 1/2 quantile from below
    decisions = [SimpleNamespace(rung=1, value=v, stopped=v > 15, trial_id=str(v), cutoff=15.0)
                 for v in (10.0, 20.0, 30.0)]
    assert rung_cutoffs(decisions, 2, "min") == {1: 20.0}
    assert rung_cutoffs(decisions, 4, "min") == {1: 15.0}
    assert rung_cutoffs(decisions, 4, "max") == {1: 25.0}
    text = format_rungs(decisions, 2, "val/mean_px_error", "min")
    assert "a trial above the rung's cut-off" in text and "30.0000 > cut-off" in text
