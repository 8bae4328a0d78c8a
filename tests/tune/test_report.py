"""Report statuses follow the sweep's scheduler."""

from __future__ import annotations

from types import SimpleNamespace

from kp_platform.tune import load_space
from kp_platform.tune.report import _scheduler, _status
from kp_platform.tune.runner import SPACE_COPY, _settings_text
from tests.tune.conftest import space_data, write_space


def test_a_trial_that_ended_early_is_stopped_under_asha_and_completed_under_fifo(tmp_path):
    (tmp_path / "config.yaml").write_text("trainer: {max_epochs: 4}\n")
    trial = SimpleNamespace(status="TERMINATED", path=str(tmp_path))
    assert _status(trial, 2) == "stopped (ASHA)"
    assert _status(trial, 4) == "completed"
    assert _status(trial, 2, fifo=True) == "completed"
    assert _status(SimpleNamespace(status="ERROR", path=str(tmp_path)), 2, True) == "errored"


def test_the_scheduler_is_read_back_from_the_experiment(tmp_path):
    assert _scheduler(tmp_path) == "asha"  # experiments from before the setting
    for scheduler in ("asha", "fifo"):
        data = space_data(None, tmp_path / "sweeps", scheduler=scheduler)
        spec = load_space(write_space(tmp_path / f"{scheduler}.yaml", data))
        (tmp_path / SPACE_COPY).write_text(_settings_text(spec))
        assert _scheduler(tmp_path) == scheduler
