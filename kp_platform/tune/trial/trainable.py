"""The trainable: a trial's sampled values over the base config, then the one `train()`."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from kp_platform.config import apply_overrides, config_from_dict
from kp_platform.console import quiet_library_info
from kp_platform.training import train
from kp_platform.tune.experiment import CHECKPOINT_FILE, TRIAL_DONE, TRIAL_LOG
from kp_platform.tune.trial.reporting import TuneReportCallback


def run_trial(trial_values: dict[str, Any], base: dict[str, Any],
              experiment_dir: str | None = None) -> None:
    """Trains one trial; Tune calls it with the sampled `{"optim.lr": ..., ...}`.

    Args:
        trial_values: Dotted config keys and their sampled values (what Optuna proposed).
        base: The sweep's base config as plain data (`config_to_dict`).
        experiment_dir: The local (or shared) experiment folder: the run directory is the
            trial's folder there. None (remote storage): Tune's local trial folder, synced up.
    """
    from ray import tune

    # Ray workers inherit the driver's environment; a driver that used wandb before starting Ray
    # (a pipeline's train stage, a notebook) exports its wandb service socket, and a trial that
    # joins that service loses its run settings (seen: the group). Each trial gets its own.
    os.environ.pop("WANDB_SERVICE", None)
    # Tune's status table already shows each report; Lightning's banner (GPU/TPU lines, tips)
    # and Ray's "Checkpoint successfully created" line per report only bury it.
    quiet_library_info("ray.train._internal.storage")
    # The same override path as `kp train key=value`, so a sampled value means the same thing.
    config = apply_overrides(config_from_dict(base, source="sweep base"), trial_values)
    context = tune.get_context()
    # Tune's own trial folder is a staging copy, synced to storage now and then; writing to the
    # experiment's folder keeps one run directory across retries and restores.
    run_dir = (Path(experiment_dir) / trial_dir_name(context.get_trial_id()) if experiment_dir
               else Path(context.get_trial_dir()))
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = _restore_checkpoint(tune.get_checkpoint(), run_dir)
    (run_dir / TRIAL_DONE).unlink(missing_ok=True)
    # What the run prints (its `auto` choices, library warnings) goes to its folder's log, not
    # through Ray to the driver's screen, which shows one line per trial event.
    with (open(run_dir / TRIAL_LOG, "a") as log, contextlib.redirect_stdout(log),
          contextlib.redirect_stderr(log)):
        try:
            train(config, [TuneReportCallback()], resume=resume, run_dir=run_dir,
                  job_type="trial")
        finally:
            if "wandb" in sys.modules:
                # Before Ray ends this worker and, with it, wandb's service process.
                sys.modules["wandb"].teardown()
            (run_dir / TRIAL_DONE).touch()


def trial_dir_name(trial_id: str) -> str:
    """A trial's folder in the experiment (Tune's default embeds every sampled value)."""
    return f"trial_{trial_id}"


def _restore_checkpoint(checkpoint: Any, run_dir: Path) -> Path | None:
    """Lays Tune's checkpoint out as `run_dir/checkpoints/last.ckpt`, where `train` resumes."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        target = run_dir / CHECKPOINT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        # Tune's checkpoint, not a newer local last.ckpt: Tune's results end where it ends.
        shutil.copyfile(Path(folder) / CHECKPOINT_FILE, target)
    return run_dir
