from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from kp_platform.config import load_config
from kp_platform.errors import InputError
from kp_platform.training import read_checkpoint, train
from tests.conftest import tiny_config
from tests.wandb_records import closed_offline_runs, offline_runs


def _csv_rows(run_dir):
    rows = []
    for path in sorted(run_dir.glob("logs/version_*/metrics.csv")):
        rows += list(csv.DictReader(path.open()))
    return rows


def test_run_directory_contents(trained_run):
    run_dir = trained_run.run_dir
    assert run_dir.name == "shared"
    assert load_config(run_dir / "config.yaml").model.backbone == "unet_tiny"
    assert trained_run.best_checkpoint == run_dir / "checkpoints" / "best.ckpt"
    assert trained_run.last_checkpoint.is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    # trainer.accelerator=auto: the first GPU where there is one
    assert metrics["device"].startswith("cuda:0 (" if torch.cuda.is_available() else "cpu")
    assert set(metrics["last"]["ap"]) == {"towel.corner0=towel.corner1=towel.corner2="
                                          "towel.corner3", "towel.grasp"}
    logged = [float(r["val/map"]) for r in _csv_rows(run_dir) if r.get("val/map")]
    # 8 validation images (eval.keep: auto = final): best.ckpt holds the last evaluation's weights
    assert load_config(run_dir / "config.yaml").eval.keep == metrics["keep"] == "final"
    assert metrics["best"] == {"val/map": pytest.approx(logged[-1], rel=1e-6), "epoch": 1}


def test_checkpoint_is_weights_only_and_holds_the_config(trained_run):
    checkpoint = read_checkpoint(trained_run.best_checkpoint)
    hparams = checkpoint["hyper_parameters"]
    assert type(hparams) is dict and hparams["config"]["model"]["backbone"] == "unet_tiny"
    # plain data only: the YAML safe dumper accepts nothing else
    yaml.safe_dump(hparams)


def test_metric_names_are_the_contract(trained_run):
    keys = set().union(*(row.keys() for row in _csv_rows(trained_run.run_dir)))
    corner = "towel.corner0=towel.corner1=towel.corner2=towel.corner3"
    expected = {"train/loss_epoch", f"train/loss/{corner}", "val/loss", "val/loss/towel.grasp",
                f"val/ap/{corner}/2", "val/ap/towel.grasp/8", "val/mean_ap/4", "val/map",
                "epoch"}
    assert expected <= keys


def test_wandb_offline_run_holds_metrics_and_model_artifact(trained_run):
    (run,) = offline_runs(trained_run.run_dir / "wandb")
    assert run.job_type == "train" and run.name == "shared"
    assert run.config["model"]["backbone"] == "unet_tiny"
    assert len(run.metric("val/map")) == 2  # evaluated at both epochs
    assert run.metric("val/mean_ap/2")
    assert run.metric("val/predictions/_type") == ["images/separated"] * 2  # one per evaluation
    assert len(run.metric("val/pr_curves/_type")) == 2
    media = trained_run.run_dir / "wandb"
    assert list(media.glob("offline-run-*/files/media/images/val/predictions_*.png"))
    (artifact,) = [a for a in run.artifacts if not a["use"]]
    assert artifact["type"] == "model" and artifact["name"] == "shared-model"
    assert sorted(artifact["aliases"]) == ["best", "latest"]
    assert artifact["metadata"]["val/map"] == json.loads(
        (trained_run.run_dir / "metrics.json").read_text())["best"]["val/map"]
    assert artifact["metadata"]["config"]["model"]["backbone"] == "unet_tiny"


def test_sparse_evaluation_and_final_epoch(synth_data, tmp_path):
    result = train(tiny_config(synth_data, tmp_path, "trainer.max_epochs=3", "eval.eval_every=2",
                               "logging.wandb.mode=disabled"))
    epochs = [int(r["epoch"]) for r in _csv_rows(result.run_dir) if r.get("val/map")]
    assert epochs == [1, 2]  # every 2nd epoch, and always the last
    assert not (result.run_dir / "wandb").exists()


class _StopAfterFirstEpoch(pl.Callback):
    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            trainer.should_stop = True


def test_a_run_stopped_early_is_still_evaluated(synth_data, tmp_path):
    config = tiny_config(synth_data, tmp_path, "trainer.max_epochs=6", "eval.eval_every=5",
                         "logging.wandb.mode=disabled")
    result = train(config, extra_callbacks=[_StopAfterFirstEpoch()])
    assert result.metrics["epochs"] == 1
    assert result.metrics["last"] is not None and result.best_checkpoint is not None


def test_resume_continues_the_epoch_count_and_the_wandb_run(synth_data, tmp_path, monkeypatch):
    first = train(tiny_config(synth_data, tmp_path, "trainer.max_epochs=1"))
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    resumed = train(tiny_config(synth_data, tmp_path, "trainer.max_epochs=3"),
                    resume=first.run_dir)
    # Our check and Lightning's restore both load weights-only, explicitly: on torch 2.4 / 2.5
    # (which the requirement allows) torch.load's default would unpickle.
    assert len(loads) >= 2 and all(flag is True for flag in loads), loads
    assert resumed.run_dir == first.run_dir and resumed.metrics["epochs"] == 3
    epochs = sorted({int(r["epoch"]) for r in _csv_rows(first.run_dir) if r.get("val/loss")})
    assert epochs == [0, 1, 2]  # epoch 0 from the first run, 1-2 after resuming
    runs = closed_offline_runs(first.run_dir / "wandb", 2)
    # one wandb run, continued: both parts carry its id and were closed
    assert len(runs) == 2 and runs[0].run_id == runs[1].run_id
    assert [run.exit_code for run in runs] == [0, 0]


class _CrashAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        raise RuntimeError("injected crash")


def test_a_crashed_run_is_closed_and_its_retry_continues_it(synth_data, tmp_path):
    config = tiny_config(synth_data, tmp_path, "trainer.max_epochs=1")
    run_dir = tmp_path / "retried"
    with pytest.raises(RuntimeError, match="injected crash"):
        train(config, [_CrashAfterFirstEpoch()], run_dir=run_dir)
    result = train(config, run_dir=run_dir)  # what a sweep's retry does, in the same folder
    crashed, retried = closed_offline_runs(run_dir / "wandb", 2)
    assert crashed.run_id == retried.run_id
    assert (crashed.exit_code, retried.exit_code) == (1, 0)
    assert [a["name"] for a in retried.artifacts if not a["use"]] == ["retried-model"]
    assert (result.run_dir / "metrics.json").is_file()


def test_resume_without_checkpoint_is_an_input_error(synth_data, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        train(tiny_config(synth_data, tmp_path), resume=tmp_path / "nowhere")


class _CaptureStartWeights(pl.Callback):
    def on_fit_start(self, trainer, pl_module):
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]


def test_init_from_loads_weights_but_keeps_command_line_hyperparameters(
    trained_run, synth_data, tmp_path
):
    capture = _CaptureStartWeights()
    config = tiny_config(synth_data, tmp_path, "optim.lr=0.0001", "trainer.max_epochs=1",
                         f"model.init_from={trained_run.best_checkpoint}")
    result = train(config, extra_callbacks=[capture])
    source = read_checkpoint(trained_run.best_checkpoint)["state_dict"]
    for key, value in source.items():
        assert torch.equal(capture.weights[key], value), key
    assert capture.lr == pytest.approx(1e-4)
    saved = read_checkpoint(result.last_checkpoint)["hyper_parameters"]["config"]
    assert saved["optim"]["lr"] == 0.0001
    # lineage: the offline run names the source run's model artifact as its input
    (run,) = offline_runs(result.run_dir / "wandb")
    assert run.config["lineage"] == {"input_artifact": "shared-model",
                                     "init_from": str(trained_run.best_checkpoint)}


def test_nan_loss_fails_the_run(synth_data, tmp_path):
    config = tiny_config(synth_data, tmp_path, "optim.lr=1e30", "trainer.max_epochs=3",
                         "logging.wandb.mode=disabled")
    with pytest.raises(FloatingPointError, match="training loss is (nan|inf)"):
        train(config)


def test_kp_train_command(synth_data, tmp_path, run_kp):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"backbone": "unet_tiny"}}))
    args = [f"{k}={v}" for k, v in {
        "data.train": synth_data["train"], "data.val": synth_data["val"],
        "data.input_size": "[32,32]", "trainer.max_epochs": 1, "trainer.run_root": tmp_path,
        "trainer.progress_bar": "false", "logging.wandb.mode": "disabled"}.items()]
    code, out, err = run_kp("train", config, *args)
    assert code == 0, err
    assert f"run: {tmp_path / 'default'}" in out
    code, _, err = run_kp("train", config, "optim.lrr=1")
    assert code == 2 and "did you mean 'optim.lr'" in err
    # no config file: the defaults alone, the first key=value an override like the rest
    code, out, err = run_kp("train", *args, "model.backbone=unet_tiny", "trainer.name=bare")
    assert code == 0, err
    assert f"run: {tmp_path / 'bare'}" in out
    saved = yaml.safe_load((tmp_path / "bare" / "config.yaml").read_text())
    assert saved["model"]["backbone"] == "unet_tiny"
    assert saved["data"]["train"] == str(synth_data["train"])
    code, _, err = run_kp("train", tmp_path / "nope.yaml")
    assert code == 2 and "nope.yaml" in err


def test_kp_train_prints_no_lightning_banner(synth_data, tmp_path):
    """The console script, as a user runs it: Lightning's GPU/TPU lines and tips, and wandb's
    warnings about settings Lightning passes, stay out."""
    kp = Path(sys.executable).parent / "kp"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": str(synth_data["train"])}}))
    result = subprocess.run(
        [str(kp), "train", config, f"data.val={synth_data['val']}",
         "data.input_size=[32,32]", "model.backbone=unet_tiny", "trainer.max_epochs=1",
         f"trainer.run_root={tmp_path}", "trainer.progress_bar=false",
         "logging.wandb.mode=offline"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "run: " in result.stdout
    for banner in ("GPU available", "TPU available", "Tip:", "wandb: WARNING"):
        assert banner not in result.stdout + result.stderr


def _as_corner_labels(coco_json):
    """The same dataset with every labelled keypoint written in the corner convention (+0.5)."""
    data = json.loads(coco_json.read_text())
    for ann in data["annotations"]:
        values = ann["keypoints"]
        for k in range(0, len(values), 3):
            if values[k + 2] > 0:
                values[k] += 0.5
                values[k + 1] += 0.5
    path = coco_json.with_name("annotations_corner.json")
    path.write_text(json.dumps(data))
    return path


def test_pixel_origin_corner_trains_to_the_same_prediction(synth_data, tmp_path):
    from kp_platform.inference import Detector

    corner = {split: _as_corner_labels(path) for split, path in synth_data.items()}
    common = ("trainer.max_epochs=1", "logging.wandb.mode=disabled")
    centre_run = train(tiny_config(synth_data, tmp_path, "trainer.name=centre", *common))
    corner_run = train(tiny_config(
        synth_data, tmp_path, "trainer.name=corner", "data.pixel_origin=corner",
        f"data.train={corner['train']}", f"data.val={corner['val']}", *common))
    last, reference = corner_run.metrics["last"], centre_run.metrics["last"]
    for key in ("ap", "map", "pck", "num_gt"):
        assert last[key] == reference[key], key
    images = sorted((synth_data["val"].parent / "images").iterdir())[:4]
    floor = 0.001  # the tiny config's eval.score_floor: every peak validation scores
    centre = Detector.from_checkpoint(centre_run.last_checkpoint).predict(images, min_score=floor)
    shifted = Detector.from_checkpoint(corner_run.last_checkpoint).predict(images,
                                                                          min_score=floor)
    assert sum(len(p) for per_image in centre for p in per_image.values()) > 0
    for ours, theirs in zip(centre, shifted, strict=True):
        for name, points in ours.items():
            # Written back in the corner convention: the same physical point, +0.5.
            torch.testing.assert_close(torch.as_tensor(theirs[name][:, :2]),
                                       torch.as_tensor(points[:, :2] + 0.5))
            torch.testing.assert_close(torch.as_tensor(theirs[name][:, 2]),
                                       torch.as_tensor(points[:, 2]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_training_on_cuda(synth_data, tmp_path):
    result = train(tiny_config(synth_data, tmp_path, "trainer.accelerator=cuda",
                               "trainer.precision=bf16-mixed", "trainer.name=cuda"))
    assert result.metrics["device"].startswith("cuda:0 (")
    assert 0.0 <= result.metrics["best"]["val/map"] <= 1.0
    # Saved from the GPU, it loads on the CPU (weights only) with the precision it trained in.
    checkpoint = read_checkpoint(result.best_checkpoint)
    assert checkpoint["hyper_parameters"]["config"]["trainer"]["precision"] == "bf16-mixed"


def test_single_instance_channels_are_scored_top1_and_pick_the_best_checkpoint(
        single_instance_run, capsys):
    run_dir = single_instance_run.run_dir
    saved = load_config(run_dir / "config.yaml").eval
    assert saved.top1_channels == ["kp0", "kp1", "kp2", "kp3"]
    assert saved.best_by == "mean_px_error"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = [float(r["val/mean_px_error"]) for r in _csv_rows(run_dir)
              if r.get("val/mean_px_error")]
    assert len(logged) == 3  # one per evaluation
    # best.ckpt holds the lowest error, not the highest AP
    assert metrics["best"]["val/mean_px_error"] == pytest.approx(min(logged), rel=1e-6)
    assert metrics["best"]["epoch"] == logged.index(min(logged))
    assert set(metrics["last"]["top1"]["channels"]) == set(saved.top1_channels)


def test_best_by_map_keeps_the_highest_ap_even_with_top1_channels(tmp_path):
    from kp_platform.data.quads import generate_quads

    train_json = generate_quads(tmp_path / "train", 16, 32, seed=0, max_quads=1)
    result = train(load_config(None, [
        f"data.train={train_json}", "data.val_fraction=0.25", "data.input_size=[32, 32]",
        "model.backbone=unet_tiny", "trainer.max_epochs=2", f"trainer.run_root={tmp_path}",
        "eval.best_by=map", "eval.keep=best", "logging.wandb.mode=disabled",
        "trainer.progress_bar=false"]))
    logged = [float(r["val/map"]) for r in _csv_rows(result.run_dir) if r.get("val/map")]
    assert set(result.metrics["best"]) == {"val/map", "epoch"} and result.metrics["keep"] == "best"
    assert result.metrics["best"]["val/map"] == pytest.approx(max(logged), rel=1e-6)


def test_a_small_validation_split_keeps_the_final_weights(tmp_path, capsys):
    from kp_platform.data.quads import generate_quads

    train_json = generate_quads(tmp_path / "train", 20, 32, seed=0, max_quads=1)
    result = train(load_config(None, [
        f"data.train={train_json}", "data.input_size=[32, 32]", "model.backbone=unet_tiny",
        "trainer.max_epochs=3", "eval.eval_every=1", f"trainer.run_root={tmp_path}",
        "logging.wandb.mode=disabled", "trainer.progress_bar=false"]))
    printed = capsys.readouterr().out
    saved = load_config(result.run_dir / "config.yaml")
    # auto: 20 images, 20% would be 4 (< 100): 5% (one image) is held out, the final weights kept
    assert saved.data.val_fraction == 0.05 and saved.eval.keep == "final"
    assert "data.val_fraction = 0.05 (1 of data.train's images held out" in printed
    assert "eval.keep = final (a validation set of 1 image" in printed
    assert result.metrics["best"]["epoch"] == 2  # the last epoch, whatever its score
    assert result.metrics["keep"] == "final"
    best, last = read_checkpoint(result.best_checkpoint), read_checkpoint(result.last_checkpoint)
    assert best["epoch"] == last["epoch"]
    for name, tensor in last["state_dict"].items():
        assert torch.equal(best["state_dict"][name], tensor), name


def test_keep_final_takes_every_evaluation_and_keep_best_only_a_better_one(tmp_path):
    from types import SimpleNamespace

    from kp_platform.training.callbacks import EvaluationCheckpoint

    def module(keep):
        return SimpleNamespace(cfg=SimpleNamespace(eval=SimpleNamespace(keep=keep)),
                               best_metric=("val/mean_px_error", "min"))

    callback = EvaluationCheckpoint(tmp_path)
    callback.best_score = 3.0
    assert callback.keeps(module("final"), 9.0)  # worse, kept anyway
    assert callback.keeps(module("final"), None)  # no score at all
    assert not callback.keeps(module("best"), 9.0)
    assert callback.keeps(module("best"), 2.0)


def test_no_top1_channel_no_pose_prior(synth_data, tmp_path, capsys):
    # The cloth channels hold several keypoints per image: no top-1 channel, no prior, no line.
    result = train(tiny_config(synth_data, tmp_path, "trainer.max_epochs=1",
                               "trainer.name=no-prior"))
    assert "eval.pose_prior" not in capsys.readouterr().out
    assert "pose_prior" not in read_checkpoint(result.last_checkpoint)
