"""One real sweep (embedded Ray, Optuna, ASHA, wandb offline), read back from every angle."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import cv2
import optuna
import pytest
from ray.tune.utils.log import Verbosity, set_verbosity

from kp_platform.cli.main import main as kp_main
from kp_platform.config import get_dotted, load_config
from kp_platform.training import read_checkpoint
from kp_platform.tune.experiment import read_rungs
from kp_platform.tune.results.report import collect_trials
from tests.tune.conftest import space_data, write_space
from tests.wandb_records import offline_runs

NON_FINITE = r"FloatingPointError: training loss is (nan|inf) at epoch 0"

# A head prior of 1e-6 keeps every heatmap far below the 0.001 score floor in 4 epochs: no
# detection, AP exactly 0 (the score floor itself is part of the fixed objective), so ASHA
# must stop those trials once the base trial (AP > 0) has reached the rung;
# weight_decay=1e30 makes the loss NaN or infinite.
ZERO_AP = {"model.head_prior": 1.0e-6, "optim.weight_decay": 1.0e-4}
NAN = {"model.head_prior": 1.0e-6, "optim.weight_decay": 1.0e30}
SPACE = {
    "optim.lr": {"loguniform": [1.0e-3, 1.0e-2]},
    "model.head_prior": {"choice": [0.01, 1.0e-6]},
    "optim.weight_decay": {"choice": [1.0e-4, 1.0e30]},
    "heatmap.sigma": {"uniform": [1.5, 3.0], "when": {"model.head_prior": 0.01}},
}
BASE_POINT = {"optim.lr": 3.0e-3, "model.head_prior": 0.01, "optim.weight_decay": 1.0e-4,
              "heatmap.sigma": 2.0}


@pytest.fixture(scope="module")
def sweep(ray_session, synth_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    data = space_data(
        synth_data, root / "sweeps", name="main", space=SPACE,
        search={"seed": 0, "points_to_evaluate": [ZERO_AP, NAN, ZERO_AP]},
        asha={"grace_period": 2, "reduction_factor": 2, "max_epochs": 4}, eval_every=2,
        num_samples=4, max_concurrent=2, wandb={"mode": "offline", "project": "kp-tests"})
    # As an earlier sweep in the same process leaves it: the table must not depend on it.
    set_verbosity(Verbosity.V1_EXPERIMENT)
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = kp_main(["sweep", "run", str(write_space(root / "main.yaml", data))])
    experiment = root / "sweeps" / "main"
    study = optuna.load_study(study_name="main", storage=f"sqlite:///{experiment / 'optuna.db'}")
    by_tune_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    return {"dir": experiment, "rows": {r.trial_id: r for r in collect_trials(experiment)},
            "study": by_tune_id, "code": code, "stderr": stderr.getvalue(),
            "stdout": stdout.getvalue()}


def _trial_dir(sweep, trial_id):
    return sweep["dir"] / f"trial_{trial_id}"


def _results(sweep, trial_id):
    lines = (_trial_dir(sweep, trial_id) / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _first_trial(sweep):
    return next(tid for tid, t in sweep["study"].items() if t.number == 0)


def test_sampled_values_reach_training(sweep):
    lrs = []
    for trial_id in sweep["rows"]:
        folder = _trial_dir(sweep, trial_id)
        params = json.loads((folder / "params.json").read_text())
        config = load_config(folder / "config.yaml")
        assert config.logging.wandb.group == "main"
        for key, value in params.items():
            assert get_dotted(config, key) == value, (trial_id, key)
        for checkpoint in folder.glob("checkpoint_*/checkpoints/last.ckpt"):
            hparams = read_checkpoint(checkpoint)["hyper_parameters"]["config"]
            assert hparams["optim"]["lr"] == params["optim.lr"]
            assert hparams["model"]["head_prior"] == params["model.head_prior"]
        # the conditional parameter exists only where its condition held
        assert ("heatmap.sigma" in params) == (params["model.head_prior"] == 0.01)
        lrs.append(params["optim.lr"])
    assert len(set(lrs)) == 4  # every trial trained with its own learning rate
    first = json.loads((_trial_dir(sweep, _first_trial(sweep)) / "params.json").read_text())
    assert first == BASE_POINT  # the base config is the first trial
    assert [tid for tid, row in sweep["rows"].items() if row.base] == [_first_trial(sweep)]


def test_asha_stops_trials_on_fresh_ap_at_evaluation_epochs(sweep):
    rows = sweep["rows"]
    for trial_id in rows:
        for result in _results(sweep, trial_id):
            assert result["epoch"] in (2, 4)  # evaluation epochs only: rungs see fresh AP
            assert math.isfinite(result["val/map"])
    base = rows[_first_trial(sweep)]
    assert base.status == "completed" and base.epochs == 4 and base.best > 0
    stopped = [r for r in rows.values() if r.status == "stopped (ASHA)"]
    # at least the zero-AP trial started after the base trial passed the rung
    assert len(stopped) >= 1
    assert all(r.curve == [(2, 0.0)] and r.values["model.head_prior"] == 1.0e-6
               for r in stopped)


def test_optuna_study_records_stopped_trials_as_pruned(sweep):
    rows, study = sweep["rows"], sweep["study"]
    assert set(study) == set(rows)
    for trial_id, row in rows.items():
        trial = study[trial_id]
        expected = {"completed": "COMPLETE", "stopped (ASHA)": "PRUNED", "errored": "FAIL"}
        assert trial.state.name == expected[row.status], trial_id
        assert row.optuna_state == trial.state.name
        if row.status == "stopped (ASHA)":
            assert trial.intermediate_values == {2: 0.0}
        if row.status == "completed":
            assert trial.value == pytest.approx(row.curve[-1][1])
            assert sorted(trial.intermediate_values) == [2, 4]


def test_the_screen_shows_one_line_per_event_and_a_compact_table(sweep):
    out = sweep["stdout"]
    for row in sweep["rows"].values():
        started = [line for line in out.splitlines()
                   if line.startswith(f"trial {row.trial_id} started: ")]
        assert len(started) == 1 and "lr=" in started[0] and "weight_decay=" in started[0]
        end = {"completed": "completed", "stopped (ASHA)": "stopped by ASHA at epoch 2:",
               "errored": "failed"}[row.status]
        assert any(line.startswith(f"trial {row.trial_id} {end}") for line in out.splitlines())
    evaluated = [line for line in out.splitlines() if re.match(r"trial \w+ epoch \d+: val/map ",
                                                               line)]
    # every evaluation once: the one at which ASHA stopped a trial is in its stop line
    assert len(evaluated) == sum(len(r.curve) - (r.status == "stopped (ASHA)")
                                 for r in sweep["rows"].values())
    # Tune's own table, once, at the sweep's end (a short sweep: no table while it runs), with
    # the short parameter names instead of every config key, the metric and the epoch
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines)
               if line.startswith("| Trial name") and "| status" in line]  # not Tune's errors
    (header,) = headers
    assert "lr" in lines[header] and "weight_decay" in lines[header]
    assert "val/map" in lines[header] and "epoch" in lines[header]
    last_event = max(i for i, line in enumerate(lines) if line.startswith("trial "))
    assert header > last_event
    assert max(len(line) for line in out.splitlines()) < 200
    # without the system lines Tune passes the reporter: ASHA's brackets, resources in use
    assert not re.search("Using AsyncHyperBand|Bracket:|Logical resource usage", out)
    # what each run prints stays in its folder
    assert "heatmap.stride" not in out + sweep["stderr"]
    for row in sweep["rows"].values():
        assert "heatmap.stride = " in (_trial_dir(sweep, row.trial_id) / "trial.log").read_text()


def test_nan_loss_fails_only_its_trial(sweep):
    errored = [r for r in sweep["rows"].values() if r.status == "errored"]
    assert [r.values["optim.weight_decay"] for r in errored] == [1.0e30]
    # weight decay 1e30 overflows the first step: nan or inf, whichever the loss meets first
    assert re.fullmatch(NON_FINITE, errored[0].reason)
    # the driver still registers the best trial, then names the failed one: one line, exit 1
    assert sweep["code"] == 1
    lines = [line for line in sweep["stderr"].splitlines() if line.startswith("error: ")]
    (line,) = lines
    assert line == f"error: trial {errored[0].trial_id} failed: {errored[0].reason}"
    assert "Traceback" not in sweep["stderr"]
    assert (sweep["dir"] / "best" / "best.ckpt").is_file()


def test_wandb_run_per_trial_and_best_checkpoint_registered(sweep):
    for trial_id, row in sweep["rows"].items():
        (run,) = offline_runs(_trial_dir(sweep, trial_id) / "wandb")
        assert run.group == "main" and run.job_type == "trial"
        assert run.config["optim"]["lr"] == row.values["optim.lr"]
        if row.status != "errored":
            # stopped by ASHA or not, the trial wrapped up: full history, files written, its
            # model artifact logged and the run closed
            assert len(run.metric("val/map")) == len(row.curve)
            assert (_trial_dir(sweep, trial_id) / "metrics.json").is_file()
            assert [a["name"] for a in run.artifacts if not a["use"]] == [
                f"trial_{trial_id}-model"]
            assert run.exit_code == 0
        else:
            assert run.exit_code == 1  # a failed trial's run is closed too, as failed
    (register,) = offline_runs(sweep["dir"] / "best" / "wandb")
    assert register.job_type == "register" and register.group == "main"
    (artifact,) = [a for a in register.artifacts if not a["use"]]
    assert artifact["name"] == "main-best" and artifact["type"] == "model"
    assert "best" in artifact["aliases"]
    best_row = max(sweep["rows"].values(), key=lambda r: r.best or -1)
    meta = artifact["metadata"]
    assert meta["trial_id"] == best_row.trial_id
    # the best checkpoint of the best trial, not its latest one
    assert meta["val/map"] == pytest.approx(best_row.best)
    best_epoch = max(best_row.curve, key=lambda point: point[1])[0]
    assert read_checkpoint(sweep["dir"] / "best" / "best.ckpt")["epoch"] == best_epoch - 1
    assert meta["config"]["optim"]["lr"] == best_row.values["optim.lr"]
    # the report's plots go to the registration run too
    (logged,) = [row for row in register.history if "report/val_map/_type" in row]
    assert logged["report/val_map/_type"] == "image-file"
    assert (register.path.parent / "files" / logged["report/val_map/path"]).is_file()


def test_live_rung_decisions_are_recorded_with_the_cutoff_ray_used(sweep):
    decisions = read_rungs(sweep["dir"])
    rows = sweep["rows"]
    assert decisions and {d.rung for d in decisions} == {2}  # max_epochs 4: one rung, at 2
    for d in decisions:
        # the recorded cut-off is the one ASHA compared with: stopped exactly when below it
        assert d.stopped == (d.cutoff is not None and d.value < d.cutoff)
        assert d.value == pytest.approx(dict(rows[d.trial_id].curve)[2])
    stopped = {d.trial_id for d in decisions if d.stopped}
    assert stopped == {tid for tid, r in rows.items() if r.status == "stopped (ASHA)"}


def test_report_command(sweep, run_kp, tmp_path, monkeypatch):
    monkeypatch.chdir(sweep["dir"].parent)  # a relative folder, as `make demo` passes it
    code, out, err = run_kp("sweep", "report", sweep["dir"].name, "--out",
                            tmp_path / "r.json")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["trial", "status"] and "best val/map" in lines[0]
    assert sum(line.split()[0] in sweep["rows"] for line in lines[1:5]) == 4
    assert "stopped (ASHA)" in out and "completed" in out and "PRUNED" in out
    assert any(re.search(NON_FINITE + "$", line) for line in lines)
    plot = cv2.imread(str(sweep["dir"] / "val_map.png"))
    assert plot is not None and plot.shape[2] == 3
    assert len(json.loads((tmp_path / "r.json").read_text())) == 4
    base = sweep["rows"][_first_trial(sweep)]
    assert f"base config (trial {base.trial_id}, completed): {base.best:.4f}" in out
    stopped = [r for r in sweep["rows"].values() if r.status == "stopped (ASHA)"]
    reached = sum(2 in dict(r.curve) for r in sweep["rows"].values())
    assert f"epoch 2: {reached} trials reached it, {len(stopped)} stopped" in out
    for row in stopped:
        assert f"trial {row.trial_id} stopped at epoch 2: val/map 0.0000 < cut-off" in out
    # the closing lines say where everything is
    assert f"best checkpoint: {Path('main') / 'best' / 'best.ckpt'}" in out
    assert "kp sweep sync main" in out and "kp sweep dashboard main" in out
    # --brief (make demo's): what the sweep printed while it ran is left out, the rest stays
    code, brief, err = run_kp("sweep", "report", sweep["dir"].name, "--brief")
    assert code == 0, err
    firsts = [line.split()[0] for line in brief.splitlines() if line.split()]
    assert "trial" not in firsts and not set(firsts) & set(sweep["rows"])  # no table, no rows
    assert f"base config (trial {base.trial_id}, completed): {base.best:.4f}" in brief
    assert f"epoch 2: {reached} trials reached it, {len(stopped)} stopped" in brief
    assert "stopped at epoch" not in brief and "best checkpoint:" in brief


def test_sync(sweep, run_kp, tmp_path, monkeypatch):
    runs = sorted(Path(sweep["dir"]).glob("**/wandb/offline-run-*"))
    code, out, _ = run_kp("sweep", "sync", sweep["dir"], "--dry-run")
    assert code == 0 and f"would sync {len(runs)} offline wandb runs" in out
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    code, _, err = run_kp("sweep", "sync", sweep["dir"])
    assert code == 2 and "wandb sync needs credentials" in err and err.count("\n") == 1
