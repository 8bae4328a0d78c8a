"""One driver per experiment: a live driver's lock stops a second `kp sweep`; a dead one's is
taken over with a warning."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kp_platform.tune.runner as runner
from kp_platform.errors import InputError
from kp_platform.tune.experiment import LOCK_FILE
from kp_platform.tune.lock import DriverLock, read_lock
from tests.tune.conftest import space_data, write_space

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from kp_platform.tune.lock import DriverLock
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


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(experiment: Path, **record) -> None:
    experiment.mkdir(parents=True, exist_ok=True)
    now = time.time()
    data = {"host": socket.gethostname(), "pid": _dead_pid(), "start": now - 300,
            "started": "2026-01-01T00:00:00Z", "heartbeat": now, **record}
    (experiment / LOCK_FILE).write_text(json.dumps(data))


def test_a_second_sweep_on_a_live_drivers_experiment_exits_2(tmp_path, run_kp, synth_data,
                                                             no_ray):
    path = write_space(tmp_path / "space.yaml", space_data(synth_data, tmp_path / "sweeps"))
    experiment = tmp_path / "sweeps" / "t"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO),
                                                       os.environ.get("PYTHONPATH", "")]))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(experiment)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        record = read_lock(experiment / LOCK_FILE)
        code, out, err = run_kp("sweep", path)
        assert code == 2, (out, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "another sweep driver is running" in err
        for value in (socket.gethostname(), f"pid {holder.pid}", record["started"]):
            assert value in err, err
        assert read_lock(experiment / LOCK_FILE) == record  # untouched
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # Its driver killed, the lock is left behind and taken over: the sweep gets past it.
    code, out, err = run_kp("sweep", path, "--resume")
    assert "warning:" in err and f"pid {holder.pid}" in err and "no longer runs" in err
    assert code == 2 and "Ray would start here" in err  # the lock did not stop it
    assert not (experiment / LOCK_FILE).exists()  # released on exit


def test_a_dead_drivers_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    experiment = tmp_path / "exp"
    _write_lock(experiment)
    with DriverLock(experiment) as lock:
        held = read_lock(experiment / LOCK_FILE)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert lock.record == held
    err = capsys.readouterr().err
    assert err.startswith("warning:") and "its process no longer runs" in err
    assert not (experiment / LOCK_FILE).exists()
    assert experiment.is_dir()  # the folder existed before the lock: it stays


def test_another_hosts_lock_counts_until_its_heartbeat_is_a_minute_old(tmp_path, capsys):
    experiment = tmp_path / "exp"
    _write_lock(experiment, host="node-7", pid=1)
    with pytest.raises(InputError, match="host node-7, pid 1, started 2026-01-01T00:00:00Z"):
        DriverLock(experiment).acquire()
    _write_lock(experiment, host="node-7", pid=1, heartbeat=time.time() - 61)
    with DriverLock(experiment):
        assert read_lock(experiment / LOCK_FILE)["host"] == socket.gethostname()
    assert "no heartbeat for 61 s" in capsys.readouterr().err


def test_the_heartbeat_is_refreshed_and_a_taken_over_lock_is_left_alone(tmp_path):
    lock = DriverLock(tmp_path / "exp", heartbeat_s=0.05).acquire()
    first = lock.record["heartbeat"]
    deadline = time.monotonic() + 10
    while read_lock(lock.path)["heartbeat"] == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_lock(lock.path)["heartbeat"] > first
    # Another driver took the lock over (this one was thought dead): release keeps theirs.
    _write_lock(tmp_path / "exp", pid=1, host="node-7")
    lock.release()
    assert read_lock(lock.path)["host"] == "node-7"


def test_folders_made_for_the_lock_alone_go_with_it(tmp_path):
    with DriverLock(tmp_path / "sweeps" / "exp"):
        assert (tmp_path / "sweeps" / "exp" / LOCK_FILE).is_file()
    assert not (tmp_path / "sweeps").exists()
