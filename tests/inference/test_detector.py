from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from kp_platform.data.coco import CocoKeypoints
from kp_platform.inference import Detector, evaluate_checkpoint, load_module
from kp_platform.metrics import evaluate_predictions
from kp_platform.training.checkpoints import read_checkpoint


def test_kp_eval_checkpoint_reproduces_validation_metrics(trained_run, synth_data, run_kp,
                                                          tmp_path):
    # best.ckpt holds the epoch whose val/ metrics are recorded with it; with AP rising or not,
    # re-evaluating the last checkpoint must give the last evaluation exactly.
    recorded = json.loads((trained_run.run_dir / "metrics.json").read_text())["last"]
    assert recorded["map"] > 0  # a non-trivial comparison
    assert evaluate_checkpoint(trained_run.last_checkpoint, synth_data["val"]) == recorded
    out = tmp_path / "m.json"
    code, text, err = run_kp("eval", "--checkpoint", trained_run.last_checkpoint, "--data",
                             synth_data["val"], "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text()) == recorded and "mAP" in text


def test_predict_file_scores_like_validation(trained_run, synth_data, run_kp, tmp_path):
    pred = tmp_path / "pred.json"
    module = load_module(trained_run.last_checkpoint)
    # the peaks validation scores: those above the floor
    code, _, err = run_kp("predict", "--checkpoint", trained_run.last_checkpoint,
                          synth_data["val"], "--out", pred,
                          "--min-score", str(module.cfg.eval.score_floor))
    assert code == 0, err
    entries = json.loads(pred.read_text())
    ids = [image.id for image in CocoKeypoints.load(synth_data["val"]).images]
    assert [e["image_id"] for e in entries] == ids
    recorded = json.loads((trained_run.run_dir / "metrics.json").read_text())["last"]
    from_file = evaluate_predictions(synth_data["val"], pred, module.cfg.data.channels,
                                     module.cfg.eval.thresholds)
    assert recorded["map"] > 0  # a non-trivial comparison
    for name, per_threshold in recorded["ap"].items():
        assert from_file["ap"][name] == pytest.approx(per_threshold, abs=1e-9)
    assert from_file["num_gt"] == recorded["num_gt"]


def test_detector_api_on_arrays_and_paths(trained_run, synth_data):
    detector = Detector.from_checkpoint(trained_run.last_checkpoint)
    image = CocoKeypoints.load(synth_data["val"]).images[0]
    by_path = detector.predict([image.path])
    pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(image.path)
                        .convert("RGB"))
    by_array = detector.predict([pixels])
    assert list(by_path[0]) == detector.channel_names
    for name in detector.channel_names:
        assert by_path[0][name].shape[1] == 3
        np.testing.assert_array_equal(by_path[0][name], by_array[0][name])


def test_checkpoint_with_pickled_objects_is_refused(tmp_path, synth_data, run_kp):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": np.dtype("float32").type}, evil)
    code, _, err = run_kp("eval", "--checkpoint", evil, "--data", synth_data["val"])
    assert code == 2
    assert err.startswith(f"error: {evil}: cannot load as a safe (weights-only) checkpoint")


def test_missing_checkpoint(tmp_path, run_kp):
    code, _, err = run_kp("predict", "--checkpoint", tmp_path / "no.ckpt", tmp_path,
                          "--out", tmp_path / "p.json")
    assert code == 2 and "no images found" in err or "checkpoint not found" in err


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_pytorch(trained_run, tmp_path, run_kp, fmt):
    out = tmp_path / f"model.{fmt}"
    code, _, err = run_kp("export", "--checkpoint", trained_run.last_checkpoint, "--format", fmt,
                          "--out", out)
    assert code == 0, err
    module = load_module(trained_run.last_checkpoint)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = torch.sigmoid(module(images)).numpy()
    if fmt == "torchscript":
        got = torch.jit.load(str(out))(images).detach().numpy()
    else:
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"images": images.numpy()})
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


def test_top1_channels_evaluate_and_predict_their_best_peak(single_instance_run, run_kp,
                                                            tmp_path):
    run = single_instance_run
    val = load_module(run.last_checkpoint).cfg.data.val
    recorded = json.loads((run.run_dir / "metrics.json").read_text())["last"]
    code, text, err = run_kp("eval", "--checkpoint", run.last_checkpoint, "--data", val)
    assert code == 0, err
    assert "top-1 channel" in text and "swap rate" in text
    assert evaluate_checkpoint(run.last_checkpoint, val)["top1"] == recorded["top1"]
    pred = tmp_path / "pred.json"
    code, _, err = run_kp("predict", "--checkpoint", run.last_checkpoint, val, "--out", pred,
                          "--min-score", "0.0")
    assert code == 0, err
    entries = json.loads(pred.read_text())
    # At most the best peak per top-1 channel, even with every peak above 0 asked for.
    assert all(len(points) <= 1 for e in entries for points in e["detections"].values())
    assert any(len(points) == 1 for e in entries for points in e["detections"].values())


def test_the_checkpoint_carries_the_pose_prior_its_evaluation_uses(single_instance_run,
                                                                   run_kp):
    # Four top-1 channels labelled in every training image: train() fitted a prior over all.
    checkpoint = read_checkpoint(single_instance_run.last_checkpoint)
    assert checkpoint["pose_prior"]["channels"] == [0, 1, 2, 3]
    assert np.asarray(checkpoint["pose_prior"]["covariance"]).shape == (8, 8)
    module = load_module(single_instance_run.last_checkpoint)
    assert module.pose_prior is not None and module.pose_prior.channels == (0, 1, 2, 3)
    val = module.cfg.data.val
    code, text, err = run_kp("eval", "--checkpoint", single_instance_run.last_checkpoint,
                             "--data", val)
    assert code == 0, err
    assert "each channel's peak chosen by the pose prior" in text
    code, text, err = run_kp("eval", "--checkpoint", single_instance_run.last_checkpoint,
                             "--data", val, "--no-pose-prior")
    assert code == 0, err
    assert "best-scoring peak" in text and "pose prior" not in text
