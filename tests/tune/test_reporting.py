from __future__ import annotations

import math

import kp_platform.tune.trial.reporting as reporting
from kp_platform.training import read_checkpoint, train
from kp_platform.tune.experiment import CHECKPOINT_FILE
from kp_platform.tune.trial.reporting import TuneReportCallback
from tests.conftest import tiny_config


def test_reports_only_fresh_evaluations_with_epoch_and_checkpoint(synth_data, tmp_path,
                                                                   monkeypatch):
    reports = []

    def fake_report(trainer, metrics):
        # what `report_with_checkpoint` hands Tune, without a Tune session
        path = tmp_path / "reported" / str(len(reports)) / CHECKPOINT_FILE
        trainer.save_checkpoint(path, weights_only=False)
        reports.append((metrics, path))

    monkeypatch.setattr(reporting, "report_with_checkpoint", fake_report)
    train(tiny_config(synth_data, tmp_path, "trainer.max_epochs=3", "eval.eval_every=2",
                      "logging.wandb.mode=disabled"), [TuneReportCallback()])
    # every 2nd epoch, and always the last; nothing on the epochs between (no NaN, no stale AP)
    assert [m["epoch"] for m, _ in reports] == [2, 3]
    for metrics, path in reports:
        assert {"val/map", "val/mean_ap/2", "val/loss"} <= set(metrics)
        assert all(math.isfinite(v) for v in metrics.values())
        assert not any(k.startswith("train/") for k in metrics)
        # the checkpoint resumes where the report was made (Lightning counts from 0)
        assert read_checkpoint(path)["epoch"] == metrics["epoch"] - 1
