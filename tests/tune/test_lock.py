"""One driver per experiment: a live driver's lock stops a second `kp sweep`; a killed one's
is released by the OS and taken over with a warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import kp_platform.tune.driver.runner as runner
from kp_platform.errors import InputError
from kp_platform.tune.driver.lock import DriverLock, read_holder
from kp_platform.tune.experiment import DRIVER_FILE, LOCK_FILE
from tests.tune.conftest import space_data, write_space

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from kp_platform.tune.driver.lock import DriverLock
with DriverLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def no_ray(monkeypatch):
    """The sweep stops where Ray would start, with a line the test can recognise."""

    def refuse(spec):
        raise InputError("Ray would start here")

    monkeypatch.setattr(runner, "init_ray", refuse)


def _hold(experiment: Path) -> subprocess.Popen:
    """A driver in another process holding the experiment's lock (it has said so)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO),
                                                       os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(experiment)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_sweep_on_a_live_drivers_experiment_exits_2(tmp_path, run_kp, synth_data,
                                                             no_ray):
    path = write_space(tmp_path / "space.yaml", space_data(synth_data, tmp_path / "sweeps"))
    experiment = tmp_path / "sweeps" / "t"
    holder = _hold(experiment)
    try:
        record = read_holder(experiment / DRIVER_FILE)
        code, out, err = run_kp("sweep", "run", path)
        assert code == 2, (out, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "another sweep driver is running" in err
        for value in (socket.gethostname(), f"pid {holder.pid}", record["started"]):
            assert value in err, err
        assert read_holder(experiment / DRIVER_FILE) == record  # untouched
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # Its driver killed, the OS released the lock: the sweep gets past it, saying whose it was.
    code, out, err = run_kp("sweep", "run", path, "--resume")
    assert "warning:" in err and f"pid {holder.pid}" in err and "ended without releasing" in err
    assert code == 2 and "Ray would start here" in err  # the lock did not stop it
    assert not (experiment / DRIVER_FILE).exists()  # released on exit


def test_a_killed_drivers_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    experiment = tmp_path / "exp"
    holder = _hold(experiment)
    with pytest.raises(InputError, match=f"pid {holder.pid}"):
        DriverLock(experiment).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with DriverLock(experiment) as lock:
        held = read_holder(experiment / DRIVER_FILE)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert lock.record == held
        with pytest.raises(InputError, match="another sweep driver is running"):
            DriverLock(experiment).acquire()  # held in this process too
    err = capsys.readouterr().err
    assert err.startswith("warning:") and f"pid {holder.pid}" in err
    assert not (experiment / DRIVER_FILE).exists()
    assert experiment.is_dir()  # the folder existed before the lock: it stays
    with DriverLock(experiment):  # released: free again, without a warning
        pass
    assert capsys.readouterr().err == ""


def test_folders_made_for_the_lock_alone_go_with_it(tmp_path):
    with DriverLock(tmp_path / "sweeps" / "exp"):
        assert (tmp_path / "sweeps" / "exp" / LOCK_FILE).is_file()
    assert not (tmp_path / "sweeps").exists()
