"""`kp sweep sync`: a failing `wandb sync` (or a missing wandb CLI) ends in one line, exit 1."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """An experiment folder with one offline run, credentials set, and a fake `wandb` CLI."""
    folder = tmp_path / "exp"
    (folder / "trial_0" / "wandb" / "offline-run-20260101_000000-abc").mkdir(parents=True)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    return folder, bin_dir / "wandb"


def _fake_wandb(path, script: str) -> None:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_failing_wandb_sync_is_one_line_with_exit_1(experiment, run_kp):
    folder, cli = experiment
    _fake_wandb(cli, "echo 'Syncing: offline-run' ; echo 'wandb: ERROR Network error"
                     " (ConnectionError)' >&2 ; exit 3")
    code, _, err = run_kp("sweep", "sync", folder)
    assert code == 1
    assert err == (f"error: {folder}: `wandb sync` failed (exit status 3): wandb: ERROR Network "
                   "error (ConnectionError)\n")


def test_missing_wandb_cli_is_one_line_with_exit_1(experiment, run_kp):
    folder, cli = experiment
    code, _, err = run_kp("sweep", "sync", folder)
    assert code == 1 and err.startswith(f"error: {folder}: cannot run {cli}: ")
    assert err.count("\n") == 1


def test_successful_sync_prints_what_wandb_said(experiment, run_kp):
    folder, cli = experiment
    _fake_wandb(cli, "echo 'Syncing: done'")
    code, out, err = run_kp("sweep", "sync", folder)
    assert code == 0, err
    assert "Syncing: done" in out and "synced 1 offline wandb runs" in out


def test_failing_wandb_registration_is_one_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import wandb

    from kp_platform.errors import ExternalError
    from kp_platform.tune.results.registry import _log_registration

    def refuse(**_kwargs):
        raise ConnectionError("api.wandb.ai unreachable\nretry later")

    monkeypatch.setattr(wandb, "init", refuse)
    wandb_cfg = SimpleNamespace(mode="offline", project="p", entity=None, group="g")
    spec = SimpleNamespace(base=SimpleNamespace(logging=SimpleNamespace(wandb=wandb_cfg)),
                           name="demo", metric="val/map", experiment_dir=tmp_path / "demo")
    with pytest.raises(ExternalError) as caught:
        _log_registration(spec, tmp_path / "best.ckpt", {}, tmp_path, plots=[])
    assert str(caught.value) == (f"{tmp_path / 'demo'}: the best checkpoint is in {tmp_path}, "
                                 "but logging it to wandb failed: ConnectionError: "
                                 "api.wandb.ai unreachable")
