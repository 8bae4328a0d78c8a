"""Two CPU processes (Lightning DDP, gloo) give the one-process answer.

The validation set has 5 images (odd: Lightning's own sampler would repeat one on the second
rank), and all 5 show the same picture with different labels, so their detections tie exactly
in score while differing in being right: only the dataset order breaks those ties.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from kp_platform.inference import evaluate_checkpoint
from kp_platform.training import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tied_val(synth_data, tmp_path_factory) -> Path:
    """5 images, all showing the first picture, each with its own image's labels."""
    data = json.loads(Path(synth_data["val"]).read_text())
    root = Path(synth_data["val"]).parent
    data["images"] = data["images"][:5]
    keep = {image["id"] for image in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    first = data["images"][0]["file_name"]
    for image in data["images"]:
        image["file_name"] = first
    path = root / "tied_5.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def ddp_run(synth_data, tied_val, tmp_path_factory):
    """One epoch on 2 CPU processes, then AP."""
    config = tiny_config({**synth_data, "val": tied_val}, tmp_path_factory.mktemp("ddp"),
                         "trainer.devices=2", "trainer.max_epochs=1",
                         "logging.wandb.mode=disabled", "data.batch_size=4", "trainer.name=ddp")
    return train(config)


def test_ddp_validation_equals_one_process_evaluation(ddp_run, tied_val):
    recorded = json.loads((ddp_run.run_dir / "metrics.json").read_text())["last"]
    alone = evaluate_checkpoint(ddp_run.last_checkpoint, tied_val, accelerator="cpu", devices=1)
    assert alone["num_images"] == recorded["num_images"] == 5  # no image counted twice
    assert recorded["num_gt"] == alone["num_gt"]
    assert alone["map"] > 0  # a comparison that can fail
    for name, per_threshold in alone["ap"].items():
        assert recorded["ap"][name] == pytest.approx(per_threshold, abs=1e-9)
    assert ddp_run.metrics["epochs"] == 1 and ddp_run.best_checkpoint is not None


@pytest.fixture(scope="module")
def reversed_val(tied_val) -> Path:
    """The tied images in the opposite order."""
    data = json.loads(tied_val.read_text())
    data["images"] = data["images"][::-1]
    path = tied_val.with_name("tied_5_reversed.json")
    path.write_text(json.dumps(data))
    return path


def test_score_ties_decide_the_ap_here(ddp_run, tied_val, reversed_val):
    # Reversing the file's image order changes which tied detection comes first, and with it
    # the AP: so the equalities of these tests check the tie-break by dataset index.
    forward = evaluate_checkpoint(ddp_run.last_checkpoint, tied_val, accelerator="cpu")
    backward = evaluate_checkpoint(ddp_run.last_checkpoint, reversed_val, accelerator="cpu")
    assert forward["num_gt"] == backward["num_gt"]
    assert forward["ap"] != backward["ap"]


def test_kp_eval_two_processes_writes_the_one_process_json(ddp_run, reversed_val, run_kp,
                                                           tmp_path):
    outputs = {}
    for devices in (1, 2):
        out = tmp_path / f"m{devices}.json"
        code, _, err = run_kp("eval", "--checkpoint", ddp_run.last_checkpoint, "--data",
                              reversed_val, "--accelerator", "cpu", "--devices", devices,
                              "--out", out)
        assert code == 0, err
        outputs[devices] = out.read_text()
    assert outputs[1] == outputs[2]
    assert json.loads(outputs[1])["num_images"] == 5


class PoisonOneRank(pl.Callback):
    """Makes rank 1's weights NaN before its first step: only that rank's loss is NaN."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == 0:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))


def test_nan_on_one_rank_stops_every_rank(synth_data, tied_val, tmp_path):
    config = tiny_config({**synth_data, "val": tied_val}, tmp_path, "trainer.devices=2",
                         "logging.wandb.mode=disabled", "data.batch_size=4")
    started = time.perf_counter()
    message = "training loss is not finite on another process at epoch 0"
    with pytest.raises(FloatingPointError, match=message):
        train(config, [PoisonOneRank()])
    # Rank 0's own loss was finite: without the agreement it would wait at the next
    # all-reduce (gloo's timeout is 30 minutes).
    assert time.perf_counter() - started < 120


def test_more_processes_than_images_is_refused(ddp_run, tied_val):
    from kp_platform.errors import InputError

    with pytest.raises(InputError, match="5 validation images make 2 batch"):
        evaluate_checkpoint(ddp_run.last_checkpoint, tied_val, accelerator="cpu", devices=6)


def test_validation_loss_is_averaged_over_ranks(ddp_run):
    # The LR plateau and early stopping watch val/loss: logged, it must be the loss over all 5
    # images (rank 0 alone saw 4 of them), as one process computes it.
    import csv

    from kp_platform.config import load_config
    from kp_platform.data.datamodule import KeypointDataModule
    from kp_platform.inference import load_module

    rows = list(csv.DictReader((ddp_run.run_dir / "logs" / "version_0" / "metrics.csv").open()))
    logged = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    config = load_config(ddp_run.run_dir / "config.yaml")
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    alone = trainer.validate(load_module(ddp_run.last_checkpoint),
                             datamodule=KeypointDataModule(config.data), verbose=False)
    assert logged[-1] == pytest.approx(alone[0]["val/loss"], rel=1e-5)


class StopAfterFirstEpoch(pl.Callback):
    """Ends fit after epoch 0 on every rank, as early stopping would, before any evaluation."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_evaluation_after_early_stopping_under_ddp(synth_data, tied_val, tmp_path):
    # eval_every=2: epoch 0 has no AP, so train() validates once more after fit, in this one
    # process (a second DDP launch from it hung at the rendezvous).
    config = tiny_config({**synth_data, "val": tied_val}, tmp_path, "trainer.devices=2",
                         "trainer.max_epochs=3", "eval.eval_every=2",
                         "logging.wandb.mode=disabled", "data.batch_size=4")
    result = train(config, [StopAfterFirstEpoch()])
    assert result.metrics["epochs"] == 1
    last = result.metrics["last"]
    alone = evaluate_checkpoint(result.last_checkpoint, tied_val, accelerator="cpu")
    assert last is not None and last["num_images"] == 5
    assert last["num_gt"] == alone["num_gt"]
    for name, per_threshold in alone["ap"].items():
        assert last["ap"][name] == pytest.approx(per_threshold, abs=1e-9)
