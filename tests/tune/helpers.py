"""Trainables for fault tests; imported by the Ray workers (the driver's cwd is on their path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def crash_once_trial(trial_values: dict[str, Any], base: dict[str, Any], marker: str,
                     crash_epoch: int, experiment_dir: str) -> None:
    """`run_trial`, but the first attempt dies right after reporting `crash_epoch`."""
    import kp_platform.tune.trial.trainable as trainable

    class CrashOnce(trainable.TuneReportCallback):
        def on_validation_end(self, trainer, pl_module) -> None:
            super().on_validation_end(trainer, pl_module)
            done = pl_module.last_evaluated_epoch + 1
            if not trainer.sanity_checking and done == crash_epoch and not Path(marker).exists():
                Path(marker).write_text(str(done))
                raise RuntimeError(f"injected crash after epoch {done}")

    # This actor's process runs only this trial, so patching the module here is local to it.
    trainable.TuneReportCallback = CrashOnce
    trainable.run_trial(trial_values, base, experiment_dir)
