"""`kp fit` end to end on a tiny data set, inside its budget; and its refusals."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from kp_platform.data.quads import generate_quads
from kp_platform.tune import load_space

BUDGET_S = 150


@pytest.fixture(scope="module")
def quads(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitdata")
    return {"train": generate_quads(root / "train", 16, 32, seed=0, max_quads=1),
            "test": generate_quads(root / "test", 6, 32, seed=1, max_quads=1)}


@pytest.fixture(scope="module")
def fitted(quads, ray_session, tmp_path_factory):
    """One `kp fit` run (in-process, on the test session's Ray) and what it printed."""
    import contextlib
    import io

    from kp_platform.cli.main import main

    folder = tmp_path_factory.mktemp("fit") / "out"
    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        code = main(["fit", str(quads["train"]), "--test", str(quads["test"]),
                     "--budget", f"{BUDGET_S}s", "--out", str(folder)])
    return {"code": code, "out": out.getvalue(), "folder": folder,
            "wall": time.monotonic() - started}


def test_fit_ends_within_its_budget_with_a_registered_best(fitted):
    assert fitted["code"] == 0, fitted["out"]
    assert fitted["wall"] <= 1.1 * BUDGET_S
    summary = json.loads((fitted["folder"] / "fit.json").read_text())
    assert summary["metric"] == "val/mean_px_error" and summary["mode"] == "min"
    assert (fitted["folder"] / "out" / "best" / "best.ckpt").is_file()  # named after the folder
    metrics = json.loads((fitted["folder"] / "test_metrics.json").read_text())
    assert metrics["num_images"] == 6 and metrics["top1"]["overall"]["num"] > 0
    assert (fitted["folder"] / "predictions.png").stat().st_size > 1000


def test_fit_says_what_it_decided_and_why(fitted):
    out = fitted["out"]
    for topic in ("data:", "input size:", "flip pairs:", "metric:", "search space:",
                  "single run:", "calibration:", "plan:", "sweep file:"):
        assert any(line.startswith(topic) for line in out.splitlines()), (topic, out)
    assert "input size:   32x32" in out
    assert "val/mean_px_error, lower is better" in out


def test_the_sweep_file_is_a_normal_sweep_that_holds_every_decision(fitted):
    path = fitted["folder"] / "space.yaml"
    spec = load_space(path)
    summary = json.loads((fitted["folder"] / "fit.json").read_text())
    plan = summary["schedule"]
    assert spec.num_samples == plan["num_samples"] >= 1
    assert (spec.asha.grace_period, spec.asha.reduction_factor, spec.asha.max_epochs) == (
        plan["grace_period"], plan["reduction_factor"], plan["max_epochs"])
    assert spec.metric == "val/mean_px_error" and spec.mode == "min"
    assert spec.base.data.input_size == [32, 32]
    # A search ranks its trials on 20%; the defaults alone hold out what `kp train` does.
    assert spec.base.data.val_fraction == (0.2 if spec.num_samples > 1 else "auto")
    assert 0 < spec.time_budget_s < BUDGET_S
    assert spec.experiment_dir == fitted["folder"].absolute() / "out"
    assert yaml.safe_load(path.read_text())["name"] == "out"


def test_the_sweep_is_named_after_the_folder():
    from pathlib import Path

    from kp_platform.fit.run import sweep_name

    assert sweep_name(Path("fits/mirror mouse (v2)")) == "mirror-mouse--v2-"
    assert sweep_name(Path("fits/._x")) == "x" and sweep_name(Path("fits/...")) == "fit"


def test_a_second_fit_into_the_same_folder_is_refused(fitted, quads, run_kp):
    code, _, err = run_kp("fit", quads["train"], "--budget", "5m", "--out", fitted["folder"])
    assert code == 2 and err.count("\n") == 1
    assert "earlier fit" in err and "kp sweep run" in err


@pytest.mark.parametrize("budget, expected", [("1m", "give at least 2m00s"),
                                              ("soon", "is not a duration")])
def test_a_bad_budget_is_refused_before_anything_starts(quads, run_kp, tmp_path, budget,
                                                       expected):
    code, _, err = run_kp("fit", quads["train"], "--budget", budget, "--out", tmp_path / "f")
    assert code == 2 and err.startswith("error: --budget: ") and expected in err
    assert not (tmp_path / "f").exists()


def test_bad_data_is_one_error_line_naming_the_file(run_kp, tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    code, _, err = run_kp("fit", bad, "--budget", "5m", "--out", tmp_path / "f")
    assert code == 2 and err.count("\n") == 1 and str(bad) in err and "no images" in err
    assert not (tmp_path / "f").exists()


def test_a_test_set_with_other_keypoints_is_refused(quads, run_kp, tmp_path):
    other = json.loads(quads["test"].read_text())
    other["categories"][0]["keypoints"] = [f"k{i}" for i in
                                           range(len(other["categories"][0]["keypoints"]))]
    path = quads["test"].parent / "other.json"
    path.write_text(json.dumps(other))
    code, _, err = run_kp("fit", quads["train"], "--test", path, "--budget", "5m",
                          "--out", tmp_path / "f")
    assert code == 2 and str(path) in err and "keypoint types differ" in err
