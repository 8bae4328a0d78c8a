"""`kp sweep dashboard DIR`: optuna-dashboard on a sweep's SQLite study, on loopback only.

(The PostgreSQL case is in test_postgres.py.)
"""

from __future__ import annotations

import socket
import subprocess

import optuna
import pytest

from tests.tune.processes import env_with_repo, fetch_studies, free_port, kp_command, stop


@pytest.fixture
def experiment(tmp_path):
    """An experiment folder with its SQLite study, as a sweep leaves it (3 finished trials)."""
    folder = tmp_path / "sweeps" / "demo"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="demo", direction="maximize",
                                storage=f"sqlite:///{folder / 'optuna.db'}")
    study.optimize(lambda t: t.suggest_float("optim.lr", 1e-4, 1e-2, log=True), n_trials=3)
    return folder


def _outside_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_dashboard_serves_the_study_on_loopback_only(experiment):
    port = free_port()
    server = subprocess.Popen(kp_command("sweep", "dashboard", str(experiment), "--port",
                                         str(port)), env=env_with_repo(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = fetch_studies(port, server)
        outside = _outside_address()
        if outside:  # not listening on the machine's other addresses
            with pytest.raises(OSError), socket.create_connection((outside, port), timeout=3):
                pass
    finally:
        out, _ = stop(server)
    assert [(s["study_name"], s["directions"]) for s in studies] == [("demo", ["maximize"])]
    assert f"http://127.0.0.1:{port}/" in out
    assert f"ssh -N -L {port}:127.0.0.1:{port}" in out


def test_a_folder_without_a_study_is_one_error_line(tmp_path, run_kp):
    code, _, err = run_kp("sweep", "dashboard", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path}: no Optuna study here")


def test_a_port_in_use_is_one_error_line(experiment, run_kp):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_kp("sweep", "dashboard", experiment, "--port", port)
    assert code == 2 and err.count("\n") == 1
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err
