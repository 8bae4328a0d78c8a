"""Letting trials that Tune stops finish cleanly, so every trial keeps a complete wandb run.

Tune stops a trial (ASHA's verdict, or the end of the experiment) by waking its training thread
with `SystemExit` inside `tune.report`, then ends the actor without waiting, and at the end of
an experiment kills whatever is still stopping. Either way the trial's wandb service dies with
the actor and its run is lost. Two halves fix that: `graceful` makes the actor wait for the
training thread (`TuneReportCallback` turns the `SystemExit` into a normal end of training), and
`WaitForStoppingTrials` keeps the driver from ending the experiment under a trial's feet.
Written against ray 2.60's `FunctionTrainable` (pyproject pins ray to 2.60).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from kp_platform.tune.experiment import TRIAL_DONE

FINISH_TIMEOUT_S = 300
"""How long a stopped trial may take to wrap up (close its wandb run, write its files)."""
WAIT_TIMEOUT_S = 120
"""How long the driver waits for stopping trials before the experiment ends."""


def graceful(trainable: Any) -> type:
    """The Tune class for a function trainable whose stopped trials finish cleanly."""
    from ray.tune.result import RESULT_DUPLICATE
    from ray.tune.trainable.function_trainable import wrap_function

    class GracefulFunctionTrainable(wrap_function(trainable)):
        _stopping = False

        def _trainable_func(self, config: dict[str, Any]) -> None:
            from ray.train._internal.session import get_session

            trainable(config)
            # Tune's end-of-function report; after a stop nobody reads it and it would block.
            if not self._stopping:
                get_session().report({RESULT_DUPLICATE: True})

        def cleanup(self) -> None:
            from ray.train._internal.session import get_session, shutdown_session

            self._stopping = True
            session = get_session()
            try:
                session.finish(timeout=FINISH_TIMEOUT_S)  # Ray's own cleanup waits 0 s
            finally:
                session._report_thread_runner_error()
                shutdown_session()

    GracefulFunctionTrainable.__name__ = "run_trial"
    return GracefulFunctionTrainable


class WaitForStoppingTrials(tune.Callback):
    """Holds the driver, once no trial runs, until stopped trials have wrapped up.

    Tune calls `on_trial_complete` before it asks the actor to stop, so the wait happens at the
    end of that control-loop step. Only for local storage, where the driver sees trial folders.
    """

    def __init__(self, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._stopping: dict[str, Path] = {}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stopping[trial.trial_id] = Path(trial.path) / TRIAL_DONE

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._stopping or any(t.status in _ACTIVE for t in trials):
            return  # the experiment goes on, and Tune gives stopping actors minutes
        deadline = time.monotonic() + self.timeout_s
        while self._stopping and time.monotonic() < deadline:
            self._stopping = {k: v for k, v in self._stopping.items() if not v.exists()}
            time.sleep(0.1)
        self._stopping.clear()


_ACTIVE = ("RUNNING", "PENDING", "PAUSED")
