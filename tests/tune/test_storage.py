"""Study storage settings: passwords by reference only, no SQLite on shared storage, samplers."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest

import kp_platform.tune.driver.runner as runner
from kp_platform.errors import InputError
from kp_platform.tune import load_space
from kp_platform.tune.driver.searcher import build_sampler
from kp_platform.tune.spec.filesystems import filesystem_type, shared_storage_reason
from kp_platform.tune.spec.preflight import check_study_storage
from kp_platform.tune.spec.settings import SearchSettings
from kp_platform.tune.storage import (
    PasswordConnect,
    StudyLocation,
    experiment_study,
    open_storage,
    study_location,
    write_study_file,
)
from tests.tune.conftest import space_data, write_space

URL = "postgresql://kp@db.internal:5432/sweeps"
MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
nfs-server:/export /mnt/kp-results nfs4 rw,vers=4.1 0 0
bucket /mnt/bucket fuse.s3fs rw 0 0
/dev/sdb1 /mnt/kp-results/local ext4 rw 0 0
overlay /mnt/over fuse.fuse-overlayfs rw 0 0
"""


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(spec):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runner, "init_ray", refuse)


def _one_error_line(run_kp, *argv):
    code, out, err = run_kp(*argv)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("where", ["yaml", "command line", "query"])
def test_a_password_in_the_url_is_refused_without_repeating_it(tmp_path, run_kp, where):
    storage = {"yaml": "postgresql://kp:s3cr3t@db/sweeps", "command line": URL,
               "query": "postgresql://kp@db/sweeps?password=s3cr3t"}[where]
    path = write_space(tmp_path / "space.yaml",
                       space_data(None, tmp_path / "sweeps", search={"storage": storage}))
    extra = ["search.storage=postgresql://kp:s3cr3t@db/sweeps"] if where == "command line" else []
    err = _one_error_line(run_kp, "sweep", "run", path, *extra)
    assert "search.storage: the URL holds a password" in err and str(path) in err
    assert "s3cr3t" not in err
    assert not (tmp_path / "sweeps").exists()


def test_an_unset_password_variable_stops_the_sweep_before_ray(tmp_path, run_kp, no_ray,
                                                               synth_data, monkeypatch):
    monkeypatch.delenv("KP_NO_SUCH_PASSWORD", raising=False)
    search = {"storage": URL, "storage_password_env": "KP_NO_SUCH_PASSWORD"}
    path = write_space(tmp_path / "space.yaml",
                       space_data(synth_data, tmp_path / "sweeps", search=search))
    err = _one_error_line(run_kp, "sweep", "run", path)
    assert "search.storage_password_env" in err and "KP_NO_SUCH_PASSWORD is not set" in err


def test_password_file_and_variable_are_alternatives(tmp_path):
    search = {"storage": URL, "storage_password_env": "A", "storage_password_file": "/x"}
    path = write_space(tmp_path / "s.yaml", space_data(None, tmp_path, search=search))
    with pytest.raises(InputError, match="search.storage_password_file"):
        load_space(path)


def test_the_pickled_storage_holds_the_password_source_not_the_password(tmp_path,
                                                                         monkeypatch):
    secret_file = tmp_path / "pw"
    secret_file.write_text("file-secret\n")
    monkeypatch.setenv("KP_PW", "env-secret")
    for location in (StudyLocation("postgresql+psycopg://kp@db/s", "s", password_env="KP_PW"),
                     StudyLocation("postgresql+psycopg://kp@db/s", "s",
                                   password_file=str(secret_file))):
        creator = PasswordConnect(location)
        data = pickle.dumps(creator)
        assert b"secret" not in data
        assert pickle.loads(data).params == {"host": "db", "user": "kp", "dbname": "s"}


def test_study_file_round_trip_never_holds_a_password(tmp_path):
    location = StudyLocation("postgresql+psycopg://kp@db:5432/s", "demo", password_env="PW")
    text = write_study_file(location, tmp_path).read_text()
    assert "postgresql://kp@db:5432/s" in text
    assert experiment_study(tmp_path) == location
    assert experiment_study(tmp_path / "none") is None


def _spec(tmp_path, **settings):
    return load_space(write_space(tmp_path / "s.yaml",
                                  space_data(None, tmp_path / "sweeps", **settings)))


def test_sqlite_is_refused_on_a_cluster_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with pytest.raises(InputError) as caught:
        check_study_storage(_spec(tmp_path))
    message = str(caught.value)
    assert "RAY_ADDRESS is set" in message and "set search.storage to an RDB URL" in message
    assert "search.allow_sqlite_on_shared_storage" in message
    check_study_storage(_spec(tmp_path, search={"allow_sqlite_on_shared_storage": True}))
    check_study_storage(_spec(tmp_path, search={"storage": URL}))  # an RDB: fine


def test_sqlite_is_refused_on_remote_storage(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = _spec(tmp_path, storage_path="s3://bucket/kp")
    with pytest.raises(InputError, match="s3://bucket/kp is remote storage"):
        check_study_storage(spec)
    assert spec.snapshot_period() == 30.0  # snapshots upload: not every second
    # local: every second, so the experiment folder's result files follow the trials
    assert _spec(tmp_path).snapshot_period() == 1.0
    assert _spec(tmp_path, checkpoint_period_s=5).snapshot_period() == 5.0
    assert _spec(tmp_path, checkpoint_period_s="auto").snapshot_period() == "auto"
    with pytest.raises(InputError, match="checkpoint_period_s: expected float or one of 'auto'"):
        _spec(tmp_path, checkpoint_period_s="often")
    with pytest.raises(InputError, match="checkpoint_period_s must be > 0"):
        _spec(tmp_path, checkpoint_period_s=0)


def test_network_filesystems_are_recognised(tmp_path):
    assert filesystem_type("/mnt/kp-results/sweeps/demo", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/kp-results/local/x", MOUNTS) == "ext4"  # mounted inside
    assert filesystem_type("/mnt/kp-resultsX", MOUNTS) == "ext4"  # a prefix, not the mount
    env: dict[str, str] = {}
    for path, shared in [("/mnt/kp-results/demo", True), ("/mnt/bucket/demo", True),
                         ("/mnt/over/demo", False), ("/tmp/demo", False),
                         ("/home/me/sweeps/demo", False)]:
        reason = shared_storage_reason("sweeps", Path(path), env, MOUNTS)
        assert (reason is not None) == shared, (path, reason)
    assert "network filesystem (nfs4)" in shared_storage_reason(
        "/mnt/kp-results", Path("/mnt/kp-results/demo"), env, MOUNTS)
    # This machine's own table is read when none is given; tmp_path is a local disk here.
    assert filesystem_type(tmp_path) is not None


def test_sampler_settings_build_optunas_samplers():
    tpe = build_sampler(SearchSettings(seed=3, n_ei_candidates=8, multivariate=True))
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._n_ei_candidates == 8 and tpe._multivariate and tpe._group
    assert isinstance(build_sampler(SearchSettings(sampler="random")),
                      optuna.samplers.RandomSampler)
    assert isinstance(build_sampler(SearchSettings(sampler="gp")), optuna.samplers.GPSampler)


def test_an_unknown_sampler_is_refused(tmp_path, run_kp):
    path = write_space(tmp_path / "s.yaml",
                       space_data(None, tmp_path / "sweeps", search={"sampler": "cmaes"}))
    err = _one_error_line(run_kp, "sweep", "run", path)
    assert "search.sampler must be one of tpe, random, gp" in err


def test_default_study_is_sqlite_in_the_experiment(tmp_path):
    spec = _spec(tmp_path)
    location = study_location(spec)
    assert location.url == f"sqlite:///{spec.experiment_dir / 'optuna.db'}"
    spec.experiment_dir.mkdir(parents=True)
    storage = open_storage(location)
    optuna.create_study(study_name="t", storage=storage)
    assert experiment_study(spec.experiment_dir).study_name == "t"


def test_a_local_sqlite_study_uses_write_ahead_logging(tmp_path):
    """On this machine's disk: WAL, one fsync per log checkpoint (the driver commits several
    times a trial); elsewhere SQLite's default journal, which a network filesystem can hold."""
    import sqlite3

    spec = _spec(tmp_path)
    spec.experiment_dir.mkdir(parents=True)
    location = study_location(spec)
    storage = open_storage(location, local_disk=True)
    study = optuna.create_study(study_name="t", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    database = spec.experiment_dir / "optuna.db"
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Tune pickles the searcher with its storage: the copy opens the same database
    copy = pickle.loads(pickle.dumps(storage))
    assert len(optuna.load_study(study_name="t", storage=copy).trials) == 3
    # a plain reader (the report, the dashboard) sees every committed trial
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{database}").trials) == 3

    other = tmp_path / "other.db"
    plain = open_storage(StudyLocation(f"sqlite:///{other}", "t"), local_disk=False)
    optuna.create_study(study_name="t", storage=plain)
    assert sqlite3.connect(other).execute("PRAGMA journal_mode").fetchone() == ("delete",)
