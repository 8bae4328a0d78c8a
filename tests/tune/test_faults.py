"""Faults: a trial that crashes is retried from its checkpoint; a killed driver is resumed."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from kp_platform.config import config_to_dict
from kp_platform.tune import load_space
from kp_platform.tune.driver.lifecycle import graceful
from kp_platform.tune.driver.runner import build_tuner
from kp_platform.tune.results.report import collect_trials
from tests.tune.conftest import space_data, write_space
from tests.tune.helpers import crash_once_trial
from tests.wandb_records import closed_offline_runs, offline_runs

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 8  # per trial in the kill test: a wide window to interrupt the second trial in


def _epochs_logged(trial_dir: Path) -> list[list[int]]:
    """Per Lightning log version (one per attempt that got to write one): its epochs."""
    versions = []
    for path in sorted(trial_dir.glob("logs/version_*/metrics.csv")):
        versions.append(sorted({int(row["epoch"]) for row in csv.DictReader(path.open())}))
    return versions


def _results(trial_dir: Path) -> list[dict]:
    results = []
    for line in (trial_dir / "result.json").read_text().splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:  # a line still being written
            break
    return results


def _reported_epochs(trial_dir: Path) -> list[int]:
    return [result["epoch"] for result in _results(trial_dir)]


def test_crashing_trial_is_retried_from_its_checkpoint(ray_session, synth_data, tmp_path):
    from ray import tune

    data = space_data(synth_data, tmp_path / "sweeps", name="retry", num_samples=1,
                      max_failures=1, eval_every=1,
                      asha={"grace_period": 4, "reduction_factor": 2, "max_epochs": 4},
                      wandb={"mode": "offline", "project": "kp-tests"})
    spec = load_space(write_space(tmp_path / "retry.yaml", data))
    marker = tmp_path / "crashed"
    trainable = tune.with_resources(graceful(
        tune.with_parameters(crash_once_trial, base=config_to_dict(spec.base),
                             marker=str(marker), crash_epoch=2,
                             experiment_dir=str(spec.experiment_dir))), {"cpu": 1})
    spec.experiment_dir.mkdir(parents=True)
    (result,) = build_tuner(spec, trainable).fit()
    assert marker.read_text() == "2"  # the first attempt died after reporting epoch 2
    assert result.error is None and result.metrics["epoch"] == 4
    trial_dir = Path(result.path)
    # the second attempt started from the epoch-2 checkpoint and carried on counting
    assert _reported_epochs(trial_dir) == [1, 2, 3, 4]
    assert _epochs_logged(trial_dir) == [[0, 1], [2, 3]]
    # one wandb run for the trial: the crashed attempt closed it (exit 1), the retry continued
    # it (same id) and ended it with the run's files and its model artifact
    crashed, retried = closed_offline_runs(trial_dir / "wandb", 2)
    assert crashed.run_id == retried.run_id
    assert (crashed.exit_code, retried.exit_code) == (1, 0)
    assert [a["name"] for a in retried.artifacts if not a["use"]] == [f"{trial_dir.name}-model"]
    assert (trial_dir / "metrics.json").is_file()


def test_trials_failing_at_run_time_end_in_one_line_each(ray_session, synth_data, tmp_path,
                                                          run_kp):
    """Every trial fails (a NaN loss, which no pre-flight can foresee), even when retried: the
    driver names each failed trial on one line, registers nothing and exits 1."""
    data = space_data(synth_data, tmp_path / "sweeps", name="failing", num_samples=1,
                      max_failures=1, search={"seed": 0, "startup_trials": 10},
                      asha={"grace_period": 1, "reduction_factor": 2, "max_epochs": 1})
    data["base"]["overrides"]["optim.weight_decay"] = 1.0e30
    code, out, err = run_kp("sweep", "run", write_space(tmp_path / "failing.yaml", data))
    assert code == 1, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert re.fullmatch(r"error: trial \w+ failed: FloatingPointError: training loss is "
                        r"(nan|inf) at epoch 0", line)
    assert "Traceback" not in err
    assert "nothing registered" in out
    assert not (tmp_path / "sweeps" / "failing" / "best").exists()


@pytest.fixture
def ray_tmp():
    folder = tempfile.mkdtemp(prefix="kpray-", dir="/tmp")  # short: Ray's socket paths
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_killed_driver_resumes_the_sweep(synth_data, tmp_path, ray_tmp):
    # A snapshot every second, whatever the default: the second trial, seconds old when the
    # driver is killed, must be in the last snapshot to be resumed rather than re-suggested.
    data = space_data(synth_data, tmp_path / "sweeps", name="kill", num_samples=2,
                      max_concurrent=1, eval_every=1, checkpoint_period_s=1,
                      asha={"grace_period": EPOCHS, "reduction_factor": 2, "max_epochs": EPOCHS},
                      wandb={"mode": "offline", "project": "kp-tests"})
    # Readings that rise epoch on epoch, as the running averages give on this tiny run: with
    # statistics of the current weights (`eval.precise_bn`) its val/map can dip below all
    # earlier ones, and Tune's retention by score (num_to_keep=4) then deletes that checkpoint
    # at the next report, while the snapshot written a moment later is what a killed driver
    # resumes from. A Tune race the README's resume section names; not what this test is about.
    data["base"]["overrides"]["eval.precise_bn"] = False
    space = write_space(tmp_path / "kill.yaml", data)
    experiment = tmp_path / "sweeps" / "kill"
    kp = [str(Path(sys.executable).parent / "kp"), "sweep", "run", str(space)]
    # The driver runs its own embedded Ray, in a temp dir of its own (a killed head's leftovers
    # must not reach the test session's Ray). Ray's token-authentication mode is left to kp.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"},
           "RAY_TMPDIR": ray_tmp}
    log = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(kp, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        interrupted = _wait_for_second_trial_mid_run(experiment, driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _kill_group(driver.pid)
    second = subprocess.run(kp, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=400, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # kp states token authentication for its embedded Ray: no warning from Ray about the mode
    assert "Token authentication" not in second.stdout + second.stderr

    rows = collect_trials(experiment)
    assert [r.status for r in rows] == ["completed", "completed"]
    assert all(r.epochs == EPOCHS for r in rows)
    assert sorted(p.name for p in experiment.glob("trial_*")) == sorted(
        f"trial_{r.trial_id}" for r in rows)
    assert not (experiment / "orphans").exists()
    # the interrupted trial continued from its last checkpoint instead of starting over
    results = _results(experiment / interrupted)
    assert sorted({r["epoch"] for r in results}) == list(range(1, EPOCHS + 1))
    restarts = [r for r in results[1:] if r["iterations_since_restore"] == 1]
    assert len(restarts) == 1 and restarts[0]["epoch"] > 1
    assert _epochs_logged(experiment / interrupted)[-1][0] > 0  # Lightning resumed, too
    # one wandb run per trial: the interrupted trial's restored attempt continued its run and
    # ended it with its files and model artifact. The killed attempt's part was never closed
    # and may hold no record yet: its id is read from its folder name (offline-run-<time>-<id>).
    for row in rows:
        trial_dir = experiment / f"trial_{row.trial_id}"
        runs = offline_runs(trial_dir / "wandb")
        assert len(runs) == (2 if trial_dir.name == interrupted else 1)
        assert {run.path.parent.name.split("-")[3] for run in runs} == {runs[-1].run_id}
        assert runs[-1].exit_code == 0 and (trial_dir / "metrics.json").is_file()
        assert [a["name"] for a in runs[-1].artifacts if not a["use"]] == [
            f"{trial_dir.name}-model"]
    study = optuna.load_study(study_name="kill",
                              storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


def _wait_for_second_trial_mid_run(experiment: Path, driver: subprocess.Popen) -> str:
    """Waits until one trial has finished and the next has checkpointed but not finished.

    Returns:
        The second trial's folder name.
    """
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
        trials = [p for p in experiment.glob("trial_*") if (p / "result.json").is_file()]
        counts = {p.name: len(_reported_epochs(p)) for p in trials}
        # 3+ reports: the trial's checkpoints have forced an experiment snapshot that holds it
        if (len(counts) == 2 and 3 <= min(counts.values()) < EPOCHS
                and EPOCHS in counts.values()):
            return min(counts, key=counts.get)
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the second trial")


def _kill_group(pid: int) -> None:
    """Ends whatever the killed driver's session left behind (its Ray, if fate-sharing failed)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
