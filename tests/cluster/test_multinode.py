"""A real multi-node sweep on this machine: a Ray head and a second node, `ray job submit`.

Both scenarios start their own cluster (tests/cluster/loopback.py: `ray start --head` and
`ray start --address`, each node in its own session with its own resources, ports and temp dir,
token authentication on), submit `kp sweep` with `ray job submit` as a user would, break
something mid-sweep, and read back what the sweep left in its experiment folder.

1. The second node dies (SIGKILL to its process group): the trial that ran there is retried from
   its last checkpoint on the surviving node, its epochs continue, and the sweep completes and
   registers its best checkpoint.
2. The job's driver dies (SIGKILL): a second `ray job submit` resumes the sweep; the finished
   trial is kept as it was, the interrupted one continues, and no orphan trial is left.

Which node a trial ran on: both nodes share this machine's IP, so `node_ip` in Tune's results
cannot tell; the `pid` in each result can. Every process of a node shares the node's session
id, so a trial's worker ran on the node whose session holds its pid (read while it runs).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from kp_platform.training import read_checkpoint
from kp_platform.tune.results.report import collect_trials
from tests.cluster.loopback import (
    BIN,
    LoopbackCluster,
    Node,
    make_root,
    pid_alive,
    remove_root,
    session_of,
)
from tests.tune.conftest import space_data, write_space

REPO = Path(__file__).resolve().parents[2]
KP = str(BIN / "kp")
EPOCHS = 10
"""Per trial: a window wide enough to break something while a trial is mid-run."""
BATCH_SIZE = 1
JOB_TIMEOUT_S = 600


@pytest.fixture
def cluster(tmp_path):
    """A loopback cluster (nodes started by the test); every process it started ends after.

    The nodes' logs are kept in the test's tmp_path (`ray-logs/`).
    """
    root = make_root()
    cluster = LoopbackCluster(root)
    try:
        yield cluster
    finally:
        left = cluster.shutdown()
        remove_root(root, keep_logs=tmp_path / "ray-logs")
    assert not left, f"processes outlived the cluster's shutdown (killed now): {left}"


def _sweep(synth_data: dict[str, Path], tmp_path: Path, name: str, **settings: Any
           ) -> tuple[Path, Path]:
    """A tiny sweep file (tests/tune/conftest.py) whose trials all run EPOCHS epochs."""
    data = space_data(synth_data, tmp_path / "sweeps", name=name, eval_every=1,
                      asha={"grace_period": EPOCHS, "reduction_factor": 2,
                            "max_epochs": EPOCHS}, **settings)
    # Both nodes run on this machine, on its local disk: SQLite's locking holds here (a real
    # cluster gets a PostgreSQL study: cluster/README.md).
    data["search"]["allow_sqlite_on_shared_storage"] = True
    # One image per step at 128²: epochs of about a second, so that a poll sees a trial mid-run.
    data["base"]["overrides"]["data.batch_size"] = BATCH_SIZE
    data["base"]["overrides"]["data.input_size"] = [128, 128]
    return write_space(tmp_path / f"{name}.yaml", data), tmp_path / "sweeps" / name


def _results(trial_dir: Path) -> list[dict[str, Any]]:
    results = []
    path = trial_dir / "result.json"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:  # a line still being written
            break
    return results


def _epochs_logged(trial_dir: Path) -> list[list[int]]:
    """Per Lightning log version (one per attempt that got to write one): its epochs."""
    return [sorted({int(row["epoch"]) for row in csv.DictReader(path.open())})
            for path in sorted(trial_dir.glob("logs/version_*/metrics.csv"))]


class Watch:
    """Polls a running sweep: its trials' results and the session of every trial process."""

    def __init__(self, cluster: LoopbackCluster, experiment: Path) -> None:
        self.cluster = cluster
        self.experiment = experiment
        self.sessions: dict[int, int | None] = {}
        """Trial pid → the session it ran in (None: it had ended before it was seen)."""
        self.node_processes: dict[int, int] = {}
        """Every pid seen in a node's session at a poll → that session: a trial whose results
        reach result.json only after its worker ended is still placed."""

    def trials(self) -> dict[str, list[dict[str, Any]]]:
        """Trial folder name → its results so far; records where each reporting pid runs."""
        for node in self.cluster.nodes:
            self.node_processes.update(dict.fromkeys(node.pids(), node.sid))
        found = {p.name: _results(p) for p in sorted(self.experiment.glob("trial_*"))}
        for results in found.values():
            for result in results:
                pid = result["pid"]
                if self.sessions.get(pid) is None:
                    self.sessions[pid] = session_of(pid) or self.node_processes.get(pid)
        return {name: results for name, results in found.items() if results}

    def until(self, condition: Callable[[dict[str, list[dict]]], Any], job: str,
              timeout: float = JOB_TIMEOUT_S, what: str = "") -> Any:
        """Polls until `condition(trials)` is truthy; fails if the job ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition(self.trials())
            if value:
                return value
            self.cluster.check_nodes()
            status = self.cluster.job(job)["status"]
            assert status not in ("SUCCEEDED", "FAILED", "STOPPED"), (
                f"job {job} ended ({status}) before {what}:\n" + self.cluster.logs(job)[-5000:])
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n" + self.cluster.logs(job)[-5000:])

    def wait_job(self, job: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
        """Waits for the job to end, still recording where trials run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.trials()
            self.cluster.check_nodes()
            info = self.cluster.job(job)
            if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                self.trials()
                return info
            time.sleep(0.2)
        raise AssertionError(f"job {job} did not end:\n" + self.cluster.logs(job)[-5000:])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _assert_succeeded(cluster: LoopbackCluster, job: str, info: dict[str, Any]) -> None:
    logs = cluster.logs(job)
    assert info["status"] == "SUCCEEDED", logs[-5000:]
    assert "trials: 2 (0 errored)" in logs, logs[-5000:]


def _assert_best_registered(experiment: Path, rows: list[Any]) -> None:
    """`<experiment>/best/best.ckpt` is the best checkpoint of the best trial."""
    best_row = max(rows, key=lambda row: row.best)
    info = json.loads((experiment / "best" / "best.json").read_text())
    assert info["trial_id"] == best_row.trial_id
    assert info["val/map"] == pytest.approx(best_row.best)
    assert info["artifact"] == f"{experiment.name}-best"
    best_ckpt = experiment / "best" / "best.ckpt"
    tune_ckpt = Path(info["tune_checkpoint"]) / "checkpoints" / "last.ckpt"
    assert tune_ckpt.parent.parent.parent == experiment / f"trial_{best_row.trial_id}"
    assert best_ckpt.read_bytes() == tune_ckpt.read_bytes()
    best_epoch = max(best_row.curve, key=lambda point: point[1])[0]
    assert read_checkpoint(best_ckpt)["epoch"] == best_epoch - 1


def _start(cluster: LoopbackCluster, head_cpus: int) -> tuple[Node, Node]:
    head = cluster.start_head(num_cpus=head_cpus)
    node = cluster.add_node("n2", num_cpus=1)
    nodes = cluster.wait_for_nodes(alive=2)
    cpus = sorted((n["is_head_node"], n["resources_total"].get("CPU", 0)) for n in nodes)
    assert cpus == [(False, 1), (True, head_cpus)]
    return head, node


def test_sweep_survives_the_loss_of_a_node(cluster, synth_data, tmp_path):
    # One CPU per node and two concurrent trials of one CPU: one trial must run on each node.
    head, node = _start(cluster, head_cpus=1)
    # Token authentication is on: a client with another token is refused.
    refused = cluster.ray_cli("job", "list", f"--address={cluster.dashboard}",
                              env={**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert refused.returncode != 0
    assert "Invalid authentication token" in refused.stdout + refused.stderr
    with pytest.raises(urllib.error.HTTPError, match="401"):  # and so is one without a token
        urllib.request.urlopen(cluster.dashboard + "/api/jobs/", timeout=30)
    space, experiment = _sweep(synth_data, tmp_path, "nodeloss", num_samples=2,
                               max_concurrent=2, max_failures=2)
    job = cluster.submit("nodeloss", [KP, "sweep", "run", str(space)], working_dir=REPO)
    watch = Watch(cluster, experiment)

    def checkpointed_on_node(trials):
        # 2+ reports (checkpoints) and several epochs still to go
        return next((name for name, r in trials.items()
                     if watch.sessions[r[-1]["pid"]] == node.sid and 2 <= len(r) <= EPOCHS - 3),
                    None)

    victim = watch.until(checkpointed_on_node, job, what="a trial on the second node mid-run")
    victim_pid = _results(experiment / victim)[-1]["pid"]
    assert victim_pid in node.pids()  # the trial's worker is one of the node's processes...
    assert any("/raylet/raylet " in command for command in node.commands())  # ...as its raylet
    node.kill()
    # The node is really gone: every process of its session (the trial's worker included),
    # and Ray marks it dead.
    _wait(lambda: not node.pids(), 60, "the killed node's processes to end")
    assert not pid_alive(victim_pid)

    def seen_dead() -> bool:
        watch.trials()  # the retry may start, and on a fast machine end, while Ray notices
        return cluster.node_states() == ["ALIVE", "DEAD"]

    _wait(seen_dead, 120, "Ray to see the node dead")

    info = watch.wait_job(job)
    _assert_succeeded(cluster, job, info)
    rows = collect_trials(experiment)
    assert [(row.status, row.epochs) for row in rows] == [("completed", EPOCHS)] * 2
    (survivor,) = {f"trial_{row.trial_id}" for row in rows} - {victim}

    # The victim was retried once, on the head, from the checkpoint of its last report there.
    results = _results(experiment / victim)
    pids = list(dict.fromkeys(r["pid"] for r in results))
    assert len(pids) == 2 and pids[0] == victim_pid
    assert watch.sessions[pids[1]] == head.sid
    before = [r["epoch"] for r in results if r["pid"] == victim_pid]
    after = [r for r in results if r["pid"] == pids[1]]
    assert before == list(range(1, len(before) + 1)) and len(before) >= 2
    # its epoch count continues where the checkpoint left it: no epoch lost, none repeated
    assert [r["epoch"] for r in after] == list(range(len(before) + 1, EPOCHS + 1))
    assert after[0]["iterations_since_restore"] == 1
    assert _epochs_logged(experiment / victim)[-1] == list(range(len(before), EPOCHS))
    # The trial on the head was not disturbed: one attempt, every epoch once.
    results = _results(experiment / survivor)
    assert {r["pid"] for r in results} == {results[0]["pid"]}
    assert watch.sessions[results[0]["pid"]] == head.sid
    assert [r["epoch"] for r in results] == list(range(1, EPOCHS + 1))

    _assert_best_registered(experiment, rows)


def test_killed_job_driver_is_resumed_by_a_second_job(cluster, synth_data, tmp_path):
    # The production layout: the head (driver) takes no trials, the second node runs them all.
    head, node = _start(cluster, head_cpus=0)
    # A snapshot every second, so that the mid-run trial is in the last one (see test_faults).
    space, experiment = _sweep(synth_data, tmp_path, "driverkill", num_samples=2,
                               max_concurrent=1, max_failures=1, checkpoint_period_s=1)
    first = cluster.submit("driverkill-1", [KP, "sweep", "run", str(space)], working_dir=REPO)
    watch = Watch(cluster, experiment)

    def one_finished_one_mid_run(trials):
        counts = {name: len(r) for name, r in trials.items()}
        # 3+ reports: the trial's checkpoints have forced an experiment snapshot that holds it
        if len(counts) == 2 and EPOCHS in counts.values() and 3 <= min(counts.values()) < EPOCHS:
            return max(counts, key=counts.get), min(counts, key=counts.get)
        return None

    finished, interrupted = watch.until(one_finished_one_mid_run, first,
                                        what="one trial finished and the next mid-run")
    driver = cluster.job(first)["driver_info"]
    assert session_of(int(driver["pid"])) not in (head.sid, node.sid)  # a session of its own
    os.kill(int(driver["pid"]), signal.SIGKILL)
    killed = cluster.wait_job(first, 120)
    assert killed["status"] == "FAILED" and "exit code 137" in killed["message"]  # SIGKILL
    # Ray ends a dead driver's trials: no orphan trial keeps running on the second node.
    interrupted_pid = _results(experiment / interrupted)[-1]["pid"]
    assert watch.sessions[interrupted_pid] == node.sid
    _wait(lambda: not pid_alive(interrupted_pid), 120, "the interrupted trial's worker to end")
    finished_results = (experiment / finished / "result.json").read_text()

    second = cluster.submit("driverkill-2", [KP, "sweep", "run", str(space), "--resume"],
                            working_dir=REPO)
    info = watch.wait_job(second)
    _assert_succeeded(cluster, second, info)
    rows = collect_trials(experiment)
    assert [(row.status, row.epochs) for row in rows] == [("completed", EPOCHS)] * 2
    # No orphan: the experiment's trials are the two trial folders, the study has two trials.
    assert sorted(f"trial_{row.trial_id}" for row in rows) == sorted([finished, interrupted])
    assert sorted(p.name for p in experiment.glob("trial_*")) == sorted([finished, interrupted])
    assert not (experiment / "orphans").exists()
    study = optuna.load_study(study_name="driverkill",
                              storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # The finished trial was kept as it was, not run again.
    assert (experiment / finished / "result.json").read_text() == finished_results
    # The interrupted trial continued from a checkpoint instead of starting over...
    results = _results(experiment / interrupted)
    assert sorted({r["epoch"] for r in results}) == list(range(1, EPOCHS + 1))
    restarts = [r for r in results[1:] if r["iterations_since_restore"] == 1]
    assert len(restarts) == 1 and restarts[0]["epoch"] > 1
    assert restarts[0]["pid"] != interrupted_pid
    assert _epochs_logged(experiment / interrupted)[-1][0] == restarts[0]["epoch"] - 1
    # ...and every attempt of every trial ran on the second node.
    pids = {r["pid"] for trial in (finished, interrupted) for r in _results(experiment / trial)}
    assert len(pids) == 3 and {watch.sessions[pid] for pid in pids} == {node.sid}

    _assert_best_registered(experiment, rows)
