from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
import pytest
import yaml

from kp_platform.errors import InputError
from kp_platform.tune import load_space
from kp_platform.tune.driver.runner import (
    SPACE_COPY,
    _check_restorable,
    _check_same_sweep,
    _settings_text,
    build_searcher,
    tidy_orphans,
)
from tests.tune.conftest import space_data, write_space


def _space(tmp_path, synth_data=None, **settings):
    """A tiny space file; with data when the test gets past the pre-flight (to Ray)."""
    return write_space(tmp_path / "space.yaml",
                       space_data(synth_data, tmp_path / "sweeps", **settings))


def test_gpu_request_beyond_every_node_is_refused(ray_session, synth_data, tmp_path, run_kp):
    # The session's Ray advertises one GPU (tests/conftest.py): two per trial fit no node.
    data = space_data(synth_data, tmp_path / "sweeps", resources={"cpu": 1, "gpu": 2})
    data["base"]["overrides"]["trainer.accelerator"] = "auto"
    path = write_space(tmp_path / "space.yaml", data)
    code, _, err = run_kp("sweep", "run", path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {path}: resources: a trial asks for 1 CPU and 2 GPU but no "
                          "node of the Ray cluster has that")
    assert not (tmp_path / "sweeps").exists()  # refused before Tune started (no PENDING trial)


def test_fractional_request_that_fits_is_accepted_and_more_cpus_than_a_node_is_not(
        ray_session, synth_data, tmp_path, run_kp):
    code, _, err = run_kp("sweep", "run", _space(tmp_path, synth_data, resources={"cpu": 8}))
    assert code == 2 and "asks for 8 CPU and 0 GPU" in err
    # 0.5 CPU fits; --resume then finds nothing to resume, which is the next check
    code, _, err = run_kp("sweep", "run", _space(tmp_path, synth_data, resources={"cpu": 0.5}),
                          "--resume")
    assert code == 2 and "nothing to resume: no Tune experiment here" in err


def test_a_time_budget_ends_the_sweep(ray_session, synth_data, tmp_path, capsys):
    import time

    from kp_platform.tune.driver.runner import run_sweep
    from kp_platform.tune.experiment import read_rungs
    from kp_platform.tune.results.report import collect_trials

    spec = load_space(_space(tmp_path, synth_data, num_samples=40, time_budget_s=12,
                             asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 30}))
    started = time.monotonic()
    results = run_sweep(spec)
    # 40 trials of up to 30 epochs take many minutes on 2 CPUs: the time limit ended it, and
    # the trials it found running.
    assert len(results) < 40 and time.monotonic() - started < 45
    assert all(result.error is None for result in results)
    # The report tells the trials the time limit ended from those ASHA stopped.
    rows = collect_trials(spec.experiment_dir)
    asha_stops = {d.trial_id for d in read_rungs(spec.experiment_dir) if d.stopped}
    assert {r.trial_id for r in rows if r.status == "stopped (ASHA)"} == asha_stops
    assert any(r.status == "stopped (time budget)" for r in rows), [r.status for r in rows]
    # ...and so do the progress lines, one per trial the budget ended, none for the others.
    told = {line.split()[1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("trial ") and "ended by the sweep's time budget" in line}
    assert told == {r.trial_id for r in rows if r.status == "stopped (time budget)"}


def _warnings_while(action) -> list[str]:
    """What Tune's experiment reader logs at WARNING or above while `action` runs."""
    import logging

    from kp_platform.console import RAY_ANALYSIS

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger(RAY_ANALYSIS)
    logger.addHandler(handler)
    try:
        action()
    finally:
        logger.removeHandler(handler)
    return [record.getMessage() for record in records]


def test_a_trial_without_results_is_reported_without_tunes_warning(ray_session, synth_data,
                                                                    tmp_path):
    from ray.tune import ExperimentAnalysis

    from kp_platform.tune.driver.runner import run_sweep
    from kp_platform.tune.results.report import collect_trials

    spec = load_space(_space(tmp_path, synth_data, num_samples=1,
                             asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 1}))
    assert not _warnings_while(lambda: run_sweep(spec))
    # As a trial the time budget ends before its first evaluation leaves it: no result files.
    (trial,) = spec.experiment_dir.glob("trial_*/")
    for name in ("result.json", "progress.csv"):
        (trial / name).unlink()
    # Tune's reader warns (the check can see a warning)...
    told = _warnings_while(lambda: ExperimentAnalysis(str(spec.experiment_dir)))
    assert any("Failed to fetch metrics for 1 trial" in message for message in told)
    # ...the report reads the same folder in silence and names the trial itself.
    rows: list = []
    assert not _warnings_while(lambda: rows.extend(collect_trials(spec.experiment_dir)))
    assert [row.epochs for row in rows] == [0]


def test_an_experiment_folder_tune_cannot_restore_is_not_overwritten(ray_session, synth_data,
                                                                     tmp_path, run_kp):
    path = _space(tmp_path, synth_data)
    stray = tmp_path / "sweeps" / "t" / "notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("mine")
    code, _, err = run_kp("sweep", "run", path)
    assert code == 2 and "the experiment folder exists but Tune cannot restore it" in err
    assert stray.read_text() == "mine"


def test_orphans_are_moved_and_their_study_trials_failed(tmp_path):
    spec = load_space(_space(tmp_path))
    spec.experiment_dir.mkdir(parents=True)
    (spec.experiment_dir / SPACE_COPY).write_text(yaml.safe_dump({"name": "t"}))
    searcher = build_searcher(spec)
    searcher.suggest("kept")
    searcher.suggest("lost")  # suggested after the driver's last snapshot, then the driver died
    for trial_id in ("kept", "lost"):
        (spec.experiment_dir / f"trial_{trial_id}").mkdir()
    searcher.on_trial_complete("kept", {"val/map": 0.5, "epoch": spec.asha.max_epochs})
    kept = SimpleNamespace(path=str(spec.experiment_dir / "trial_kept"),
                           metrics={"trial_id": "kept"})
    moved = tidy_orphans(spec, [kept])
    assert moved == [spec.experiment_dir / "orphans" / "trial_lost"]
    assert (spec.experiment_dir / "trial_kept").is_dir()
    study = optuna.load_study(study_name="t",
                              storage=f"sqlite:///{spec.experiment_dir / 'optuna.db'}")
    states = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}
    assert states == {"kept": "COMPLETE", "lost": "FAIL"}


@pytest.mark.parametrize("change", ["space", "asha"])
def test_resuming_with_another_space_is_refused(tmp_path, change):
    spec = load_space(_space(tmp_path))
    spec.experiment_dir.mkdir(parents=True)
    (spec.experiment_dir / SPACE_COPY).write_text(_settings_text(spec))
    _check_same_sweep(spec, spec.experiment_dir)  # same file: fine
    other = {"space": {"space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}}},
             "asha": {"asha": {"grace_period": 2, "reduction_factor": 2, "max_epochs": 4}}}
    spec2 = load_space(_space(tmp_path, **other[change]))
    with pytest.raises(InputError, match="started with another search space"):
        _check_same_sweep(spec2, spec.experiment_dir)


def test_unreachable_ray_address_is_one_error_line(monkeypatch):
    import ray

    from kp_platform.errors import ExternalError
    from kp_platform.tune.driver.runner import init_ray

    def refuse(*_args, **_kwargs):
        raise ConnectionError("Could not find any running Ray instance.\nPlease start one.")

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ExternalError) as caught:
        init_ray(None)
    assert str(caught.value) == ("RAY_ADDRESS=10.0.0.1:6379: cannot join the Ray cluster: "
                                 "ConnectionError: Could not find any running Ray instance.")


@pytest.mark.parametrize("name, whole", [
    ("experiment_state-2026-01-01_00-00-00.json", b'{"trial_data": [], "runner_data": {}}'),
    ("search_gen_state-2026-01-01_00-00-00.json", pickle.dumps({"counter": 2, "finished": False})),
])
def test_a_cut_short_tune_state_file_is_one_error_not_a_hung_sweep(tmp_path, name, whole):
    (tmp_path / name).write_bytes(whole)
    _check_restorable(tmp_path)  # whole: restorable
    (tmp_path / name).write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match="cut short") as caught:
        _check_restorable(tmp_path)
    assert name in str(caught.value)
