"""The shipped tiny pipeline end to end (a sweep stage, two train stages, an evaluation), read
back from every angle; then run again (everything skipped) and after an interruption.

The last two tests change the pipeline folder, so they come last, in this order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import cv2
import pytest
import yaml

from kp_platform.cli.main import main as kp_main
from kp_platform.inference.detector import evaluate_checkpoint
from tests.pipeline.conftest import REPO, TINY
from tests.wandb_records import offline_runs

STAGES = ("pretrain", "finetune", "scratch", "evaluate")


def _kp(*argv: str) -> tuple[int, str]:
    """Runs `kp` in-process from the repository root (the pipeline's paths are relative)."""
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out):
            code = kp_main([str(a) for a in argv])
    finally:
        os.chdir(cwd)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def tiny(pipeline_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    code, out = _kp("pipeline", TINY, f"root={root}")
    assert code == 0, out
    return {"dir": root / "tiny", "root": root, "out": out}


def _marker(tiny, stage: str) -> dict:
    return json.loads((tiny["dir"] / stage / "stage.json").read_text())


def _snapshot(folder: Path) -> dict[str, int]:
    """Every file under the pipeline folder and its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def test_results_table_and_plot(tiny):
    results = json.loads((tiny["dir"] / "results.json").read_text())
    assert list(results["models"]) == ["from scratch", "synthetic only", "fine-tuned"]
    assert results["thresholds"] == ["2", "4", "8"]
    assert results["num_images"] == 8
    for row in results["models"].values():
        assert set(row["mean_ap"]) == {"2", "4", "8"}
        assert all(0.0 <= v <= 1.0 for v in [*row["mean_ap"].values(), row["map"]])
    base, tuned = results["models"]["from scratch"], results["models"]["fine-tuned"]
    gain = results["gain"]["fine-tuned"]
    assert gain["4"] == pytest.approx(tuned["mean_ap"]["4"] - base["mean_ap"]["4"])
    assert gain["map"] == pytest.approx(tuned["map"] - base["map"])
    assert "from scratch" not in results["gain"]
    # The table is printed, with a row per model and the gains over the baseline.
    assert "AP@4" in tiny["out"] and "fine-tuned - from scratch" in tiny["out"]
    image = cv2.imread(str(tiny["dir"] / "results.png"))
    assert image is not None and image.shape == (520, 900, 3)  # 9 x 5.2 in at 100 dpi
    assert (image < 250).any(axis=2).mean() > 0.05  # bars and text, not a blank page
    # `render: fine-tuned`: that detector's predictions drawn on the test images, path printed
    grid = cv2.imread(str(tiny["dir"] / "predictions.png"))
    assert grid is not None and grid.shape[0] > 200 and grid.shape[1] > 600
    assert f"predictions: {tiny['dir'] / 'predictions.png'}" in tiny["out"]


def test_results_are_what_the_checkpoints_score(tiny):
    results = json.loads((tiny["dir"] / "results.json").read_text())
    row = results["models"]["fine-tuned"]
    metrics = evaluate_checkpoint(tiny["dir"] / row["checkpoint"], results["test_set"],
                                  overrides={"thresholds": [2.0, 4.0, 8.0]})
    assert metrics["mean_ap"] == row["mean_ap"] and metrics["map"] == row["map"]


def test_stage_markers(tiny):
    kinds = {name: _marker(tiny, name)["kind"] for name in STAGES}
    assert kinds == {"pretrain": "sweep", "finetune": "train", "scratch": "train",
                     "evaluate": "evaluate"}
    artifacts = {name: _marker(tiny, name)["artifact"] for name in STAGES[:3]}
    assert artifacts == {"pretrain": "tiny-pretrain-best", "finetune": "tiny-finetune-model",
                         "scratch": "tiny-scratch-model"}
    for name in STAGES[:3]:
        assert (tiny["dir"] / _marker(tiny, name)["checkpoint"]).is_file()
    pretrain = _marker(tiny, "pretrain")
    assert pretrain["checkpoint"] == "pretrain/tiny-pretrain/best/best.ckpt"
    assert (tiny["dir"] / pretrain["outputs"]["experiment"] / "optuna.db").is_file()
    assert _marker(tiny, "evaluate")["outputs"] == {
        "results": "results.json", "plot": "results.png", "predictions": "predictions.png"}
    for key in ("synthetic", "real_train", "real_test"):
        assert (tiny["dir"] / "data" / key / "annotations.json").is_file()


def test_later_stages_start_from_the_pretrained_model(tiny):
    pretrain = _marker(tiny, "pretrain")
    checkpoint = tiny["dir"] / pretrain["checkpoint"]
    sigma = pretrain["config"]["heatmap"]["sigma"]
    assert sigma != 2.0  # sampled by the sweep, not the default
    for stage in ("finetune", "scratch"):
        config = yaml.safe_load((tiny["dir"] / stage / f"tiny-{stage}" / "config.yaml")
                                .read_text())
        assert config["heatmap"]["sigma"] == sigma  # the architecture and sigma are inherited
        assert config["model"]["backbone"] == pretrain["config"]["model"]["backbone"]
        initialised = stage == "finetune"
        assert config["model"]["init_from"] == (str(checkpoint) if initialised else None)
        # only the fine-tune replays synthetic images, with `dataset:` resolved to a path
        synthetic = str(tiny["dir"] / "data" / "synthetic" / "annotations.json")
        assert config["data"]["replay"] == (synthetic if initialised else None)


def test_wandb_lineage(tiny):
    (register,) = offline_runs(tiny["dir"] / "pretrain" / "tiny-pretrain" / "best" / "wandb")
    logged = [a for a in register.artifacts if not a["use"]]
    assert [a["name"] for a in logged] == ["tiny-pretrain-best"]
    (finetune,) = offline_runs(tiny["dir"] / "finetune" / "tiny-finetune" / "wandb")
    # Offline wandb refuses use_artifact: the run's config names its input for after sync.
    assert finetune.config["lineage"]["input_artifact"] == "tiny-pretrain-best"
    assert finetune.config["lineage"]["init_from"] == str(
        tiny["dir"] / "pretrain/tiny-pretrain/best/best.ckpt")
    assert [a["name"] for a in finetune.artifacts] == ["tiny-finetune-model"]
    (scratch,) = offline_runs(tiny["dir"] / "scratch" / "tiny-scratch" / "wandb")
    assert "lineage" not in scratch.config


def test_running_again_skips_every_stage(tiny):
    before = _snapshot(tiny["dir"])
    code, out = _kp("pipeline", TINY, f"root={tiny['root']}")
    assert code == 0, out
    for index, stage in enumerate(STAGES, 1):
        assert f"[{index}/4] stage {stage}: completed" in out
    assert "fine-tuned - from scratch" in out  # the table again
    assert _snapshot(tiny["dir"]) == before  # no file written, no run started


def test_an_interrupted_stage_resumes_and_what_follows_runs_again(tiny):
    # Stage 3 "interrupted" after its last checkpoint: its plan.json and last.ckpt remain.
    (tiny["dir"] / "scratch" / "stage.json").unlink()
    code, out = _kp("pipeline", TINY, f"root={tiny['root']}")
    assert code == 0, out
    assert "stage pretrain: completed" in out and "stage finetune: completed" in out
    assert "stage scratch: resuming the interrupted train" in out
    logs = tiny["dir"] / "scratch" / "tiny-scratch" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", "version_1"]
    # The evaluation used the earlier scratch result: it is set aside and runs again.
    assert (tiny["dir"] / "evaluate.replaced-1" / "stage.json").is_file()
    assert (tiny["dir"] / "evaluate" / "stage.json").is_file()
    assert _marker(tiny, "evaluate")["plan"]["upstream"]["scratch"] == \
        _marker(tiny, "scratch")["finished"]
