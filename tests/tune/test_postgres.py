"""Two sweeps write one real PostgreSQL study database at once; report and dashboard read it.

The server is started by the `postgres` fixture (tests/tune/postgres.py). Sweep A runs in a
subprocess driver that joins the test session's Ray (`RAY_ADDRESS`, as under `ray job submit`),
sweep B in this process; both get the password only through an environment variable.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from kp_platform.tune.storage import StudyLocation, driver_url, open_storage
from tests.tune.conftest import space_data, write_space
from tests.tune.processes import env_with_repo, fetch_studies, free_port, kp_command, stop

PASSWORD_ENV = "KP_TEST_PG_PASSWORD"


def _space(synth_data, root: Path, name: str, url: str) -> Path:
    data = space_data(synth_data, root / "sweeps", name=name, scheduler="fifo",
                      search={"seed": 0, "storage": url, "storage_password_env": PASSWORD_ENV},
                      asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 1},
                      num_samples=2, max_concurrent=1)
    return write_space(root / f"{name}.yaml", data)


@pytest.fixture(scope="module")
def two_sweeps(ray_session, postgres, synth_data, tmp_path_factory):
    import ray

    from kp_platform.cli.main import main as kp_main

    root = tmp_path_factory.mktemp("pg")
    location = StudyLocation(driver_url(postgres.url), "-", PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = postgres.password
    try:
        driver_a = subprocess.Popen(
            kp_command("sweep", "run", str(_space(synth_data, root, "pg_a", postgres.url))),
            cwd=root,
            env=env_with_repo(RAY_ADDRESS=ray.get_runtime_context().gcs_address),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        storage = open_storage(location)
        deadline = time.monotonic() + 180
        # B starts once A's driver has created its study: both drivers then write at once.
        while "pg_a" not in optuna.get_all_study_names(storage):
            if driver_a.poll() is not None or time.monotonic() > deadline:
                driver_a.kill()
                pytest.fail(f"sweep A did not start: {driver_a.communicate()}")
            time.sleep(0.5)
        code_b = kp_main(["sweep", "run", str(_space(synth_data, root, "pg_b", postgres.url))])
        out_a, err_a = driver_a.communicate(timeout=300)
    finally:
        del os.environ[PASSWORD_ENV]
    assert driver_a.returncode == 0, err_a[-3000:]
    assert code_b == 0
    studies = {name: optuna.load_study(study_name=name, storage=storage)
               for name in ("pg_a", "pg_b")}
    return {"root": root, "studies": studies, "storage": storage, "server": postgres}


def test_both_sweeps_wrote_their_study_at_once(two_sweeps):
    studies = two_sweeps["studies"]
    assert set(optuna.get_all_study_names(two_sweeps["storage"])) == {"pg_a", "pg_b"}
    spans = {}
    for name, study in studies.items():
        trials = study.get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], name
        assert all(t.value is not None and "tune_trial_id" in t.user_attrs for t in trials)
        spans[name] = (min(t.datetime_start for t in trials),
                       max(t.datetime_complete for t in trials))
    # The two drivers' sweeps overlapped in time: concurrent writers of one database.
    assert spans["pg_a"][0] < spans["pg_b"][1] and spans["pg_b"][0] < spans["pg_a"][1]
    for name in studies:
        assert not (two_sweeps["root"] / "sweeps" / name / "optuna.db").exists()


def test_report_reads_the_study_from_postgres(two_sweeps, run_kp, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, two_sweeps["server"].password)
    experiment = two_sweeps["root"] / "sweeps" / "pg_a"
    code, out, err = run_kp("sweep", "report", experiment, "--plot",
                            two_sweeps["root"] / "a.png")
    assert code == 0, err
    numbers = {t.user_attrs["tune_trial_id"]: t.number
               for t in two_sweeps["studies"]["pg_a"].get_trials()}
    rows = [line.split() for line in out.splitlines()[1:] if line.split()[:1] in
            [[tid] for tid in numbers]]
    # Each Tune trial's Optuna verdict comes from PostgreSQL, in the study's order.
    assert [row[0] for row in rows] == sorted(numbers, key=numbers.get)
    assert all(row[-1] == "COMPLETE" for row in rows), out


def test_the_password_is_in_no_file_the_sweeps_wrote(two_sweeps):
    secret = two_sweeps["server"].password.encode()
    checked = 0
    for path in (two_sweeps["root"] / "sweeps").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
            checked += 1
    # Tune's pickled searcher (with Optuna's storage object) is among the files checked.
    assert list((two_sweeps["root"] / "sweeps" / "pg_b").glob("searcher-state-*.pkl"))
    assert checked > 10


def test_the_study_opens_in_optuna_dashboard(two_sweeps, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        kp_command("sweep", "dashboard", str(two_sweeps["root"] / "sweeps" / "pg_b"),
            "--port", str(port)),
        env=env_with_repo(**{PASSWORD_ENV: two_sweeps["server"].password}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = fetch_studies(port, server)
    finally:
        stop(server)
    names = {s["study_name"]: s for s in studies}
    assert {"pg_a", "pg_b"} <= set(names)
