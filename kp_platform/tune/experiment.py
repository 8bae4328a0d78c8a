"""The experiment folder's contract: the name of every file a sweep writes there, read by the
driver, the trials, the report, the registry and the dashboard alike, and the one reader of a
failed trial's error.

```
<storage_path>/<name>/
  space.yaml          the space as run (a resume reads it back)      SPACE_COPY
  study.yaml          where the Optuna study lives                   STUDY_FILE
  optuna.db           the study itself, when SQLite (the default)    DEFAULT_DB
  driver.lock         OS-locked by the running driver                LOCK_FILE
  driver.json         who holds it (host, pid, start)                DRIVER_FILE
  asha_rungs.jsonl    ASHA's decisions, one line each                RUNGS_FILE
  best/               the registered best checkpoint                 BEST_DIR
  trial_<id>/         one trial's run directory:
    config.yaml       its resolved config                            RUN_CONFIG
    checkpoints/last.ckpt                                            CHECKPOINT_FILE
    .trial_done       written when the trial ended by itself         TRIAL_DONE
    trial.log         what the run printed                           TRIAL_LOG
    error.txt         Tune's record of a failure                     TRIAL_ERROR
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPACE_COPY = "space.yaml"
STUDY_FILE = "study.yaml"
DEFAULT_DB = "optuna.db"
LOCK_FILE = "driver.lock"
DRIVER_FILE = "driver.json"
RUNGS_FILE = "asha_rungs.jsonl"
BEST_DIR = "best"
RUN_CONFIG = "config.yaml"
CHECKPOINT_FILE = Path("checkpoints") / "last.ckpt"
TRIAL_DONE = ".trial_done"
TRIAL_LOG = "trial.log"
TRIAL_ERROR = "error.txt"


def error_line(trial_path: str | Path | None, error: BaseException | None) -> str:
    """One line for a failed trial: the original exception, e.g. `FloatingPointError: ...`.

    Args:
        trial_path: The trial's folder, where Tune writes `error.txt`.
        error: The exception Tune recorded (a Result's `error`), if at hand.
    """
    cause = error
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause  # RayTaskError wraps the trial's own exception
    if cause is not None and type(cause).__module__.split(".")[0] != "ray":
        first = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {first[0]}" if first else type(cause).__name__
    error_file = Path(trial_path) / TRIAL_ERROR if trial_path else None
    text = error_file.read_text() if error_file and error_file.is_file() else str(error or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Ray's error text ends with the original exception, e.g. "FloatingPointError: ...".
    return lines[-1] if lines else "unknown error"


@dataclass(frozen=True)
class RungDecision:
    """What ASHA decided when a trial reached a rung (a line of `asha_rungs.jsonl`)."""

    trial_id: str
    rung: int
    """The rung's epoch (a milestone of the bracket)."""
    value: float
    """The trial's metric at the rung."""
    cutoff: float | None
    """The rung's cut-off before this trial was recorded; None: first trial at the rung."""
    stopped: bool


def read_rungs(experiment: str | Path) -> list[RungDecision]:
    """The live rung decisions of an experiment, in decision order (empty when none)."""
    path = Path(experiment) / RUNGS_FILE
    if not path.is_file():
        return []
    return [RungDecision(**json.loads(line)) for line in path.read_text().splitlines()
            if line.strip()]
