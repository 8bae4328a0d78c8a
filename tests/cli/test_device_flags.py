"""`--accelerator` / `--devices` / `--precision` on predict, eval and export; bf16 end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kp_platform.cli.main import build_parser
from kp_platform.inference import Detector
from kp_platform.training import train
from tests.conftest import tiny_config

PREDICT = ["predict", "--checkpoint", "c.ckpt", "x.png", "--out", "p.json"]
EVAL = ["eval", "--checkpoint", "c.ckpt", "--data", "d.json"]
EXPORT = ["export", "--checkpoint", "c.ckpt", "--format", "onnx", "--out", "m.onnx"]


@pytest.mark.parametrize("command,flags", [
    (EVAL, {"accelerator": ("auto", "cpu"), "devices": (1, "2"),
            "precision": ("32-true", "bf16-mixed")}),
    (PREDICT, {"accelerator": ("auto", "cpu"), "precision": ("32-true", "bf16-mixed")}),
    (EXPORT, {"accelerator": ("auto", "cpu")}),
])
def test_each_command_takes_the_device_flags_it_uses(command, flags):
    args = vars(build_parser().parse_args(command))
    assert {name: args[name] for name in flags} == {n: d for n, (d, _) in flags.items()}
    assert not {"accelerator", "devices", "precision"} - set(flags) & set(args)
    given = [part for name, (_, value) in flags.items() for part in (f"--{name}", value)]
    args = vars(build_parser().parse_args([*command, *given]))
    assert args["accelerator"] == "cpu"
    assert args.get("devices", 2) == 2 and args.get("precision", "bf16-mixed") == "bf16-mixed"


@pytest.mark.parametrize("command,flag", [(PREDICT, "--devices"), (EXPORT, "--devices"),
                                          (EXPORT, "--precision")])
def test_flags_a_command_cannot_use_are_usage_errors(run_kp, command, flag):
    code, _, err = run_kp(*command, flag, "2")
    assert code == 2 and f"unrecognized arguments: {flag}" in err


@pytest.mark.parametrize("flag,value,message", [
    ("--precision", "8-true", "invalid choice: '8-true'"),
    ("--devices", "0", "must be >= 1, got 0"),
    ("--accelerator", "tpu", "invalid choice: 'tpu'"),
])
def test_bad_device_flags_are_one_line_errors(run_kp, flag, value, message):
    code, _, err = run_kp("eval", "--checkpoint", "c.ckpt", "--data", "d.json", flag, value)
    assert code == 2 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1


def test_export_and_predict_on_the_chosen_cpu(trained_run, run_kp, tmp_path):
    out = tmp_path / "m.pt"
    code, _, err = run_kp("export", "--checkpoint", trained_run.last_checkpoint, "--format",
                          "torchscript", "--out", out, "--accelerator", "cpu")
    assert code == 0, err
    assert out.is_file()


def test_bf16_mixed_trains_evaluates_and_predicts_on_the_cpu(synth_data, tmp_path, run_kp):
    result = train(tiny_config(synth_data, tmp_path, "trainer.precision=bf16-mixed",
                               "trainer.max_epochs=1", "logging.wandb.mode=disabled"))
    recorded = result.metrics["last"]
    assert np.isfinite(recorded["map"])
    checkpoint = result.last_checkpoint
    out = tmp_path / "m.json"
    code, _, err = run_kp("eval", "--checkpoint", checkpoint, "--data", synth_data["val"],
                          "--accelerator", "cpu", "--precision", "bf16-mixed", "--out", out)
    assert code == 0, err
    # The same network under the same autocast as in training's validation: the same metrics.
    assert json.loads(out.read_text())["num_gt"] == recorded["num_gt"]
    assert json.loads(out.read_text())["map"] == pytest.approx(recorded["map"], abs=1e-9)
    pred = tmp_path / "p.json"
    code, _, err = run_kp("predict", "--checkpoint", checkpoint, synth_data["val"], "--out",
                          pred, "--accelerator", "cpu", "--precision", "bf16-mixed",
                          "--min-score", "0.001")
    assert code == 0, err
    entries = json.loads(pred.read_text())
    assert len(entries) == 8 and any(any(e["detections"].values()) for e in entries)
    # bf16 really ran: its scores differ from float32's, by bf16's rounding only.
    images = [e["file_name"] for e in entries][:2]
    full = Detector.from_checkpoint(checkpoint, "cpu").predict(images, min_score=0.001)
    half = Detector.from_checkpoint(checkpoint, "cpu", precision="bf16-mixed").predict(
        images, min_score=0.001)
    name = next(iter(full[0]))
    top_full, top_half = full[0][name][0, 2], half[0][name][0, 2]
    assert top_full != top_half and abs(top_full - top_half) < 0.05
