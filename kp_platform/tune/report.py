"""`kp sweep report DIR`: one row per trial (status, sampled values, best metric, epochs), a plot.

Read from what Tune and the trials left in the experiment folder, so it works during a sweep,
after it, and after a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kp_platform.errors import InputError

METRIC = "val/map"


@dataclass
class TrialRow:
    """One trial as the report shows it."""

    trial_id: str
    status: str
    """completed, stopped (ASHA), errored, running or pending."""
    values: dict[str, Any]
    best: float | None
    epochs: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(epoch, metric) at every report."""
    reason: str = ""
    optuna_state: str = ""


def collect_trials(experiment: str | Path, metric: str = METRIC) -> list[TrialRow]:
    """The trials of a Tune experiment folder, in creation order.

    Raises:
        InputError: not a Tune experiment folder.
    """
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(str(experiment))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not a sweep experiment folder ({reason})", str(experiment)) from None
    frames = analysis.trial_dataframes
    optuna_trials = _optuna_trials(Path(experiment))
    fifo = _scheduler(Path(experiment)) == "fifo"
    rows = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        curve: list[tuple[int, float]] = []
        if frame is not None and metric in frame and "epoch" in frame:
            curve = [(int(e), float(m)) for e, m in zip(frame["epoch"], frame[metric],
                                                        strict=True) if m == m]
        epochs = max((e for e, _ in curve), default=0)
        rows.append(TrialRow(
            trial_id=trial.trial_id,
            status=_status(trial, epochs, fifo),
            values=dict(trial.config),
            best=max((m for _, m in curve), default=None),
            epochs=epochs,
            curve=curve,
            reason=_error_reason(trial),
            optuna_state=optuna_trials.get(trial.trial_id, ("", 0))[0],
        ))
    # Suggestion order (Optuna's trial number); Tune lists trials in no documented order.
    order = {trial_id: number for trial_id, (_, number) in optuna_trials.items()}
    return sorted(rows, key=lambda row: order.get(row.trial_id, len(order)))


def format_table(rows: list[TrialRow], metric: str = METRIC) -> str:
    """A plain-text table; parameters a trial did not sample (conditional ones) show `-`."""
    keys = sorted({k for row in rows for k in row.values})
    header = ["trial", "status", *keys, f"best {metric}", "epochs"]
    if any(row.optuna_state for row in rows):
        header.append("optuna")
    table = [header]
    for row in rows:
        line = [row.trial_id, row.status, *(_cell(row.values.get(k, "-")) for k in keys),
                "-" if row.best is None else f"{row.best:.4f}", str(row.epochs)]
        if len(header) > len(line):
            line.append(row.optuna_state or "-")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in table]
    for row in rows:
        if row.reason:
            text.append(f"{row.trial_id} errored: {row.reason}")
    return "\n".join(text)


def _status(trial: Any, epochs: int, fifo: bool = False) -> str:
    if trial.status == "ERROR":
        return "errored"
    if trial.status != "TERMINATED":
        return trial.status.lower()
    # ASHA stops a trial by ending it early; Tune records both as TERMINATED. FIFO stops none.
    return "completed" if fifo or epochs >= _max_epochs(trial) else "stopped (ASHA)"


def _scheduler(experiment: Path) -> str:
    """The sweep's scheduler, from the settings copy `run_sweep` keeps (ASHA when absent)."""
    from kp_platform.tune.runner import SPACE_COPY

    saved = experiment / SPACE_COPY
    data = yaml.safe_load(saved.read_text()) if saved.is_file() else None
    return str((data or {}).get("scheduler", "asha"))


def _max_epochs(trial: Any) -> int:
    config_file = Path(trial.path) / "config.yaml"
    if config_file.is_file():
        return int(yaml.safe_load(config_file.read_text())["trainer"]["max_epochs"])
    return 0


def _error_reason(trial: Any) -> str:
    if trial.status != "ERROR":
        return ""
    return error_line(trial.path, None)


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
    error_file = Path(trial_path) / "error.txt" if trial_path else None
    text = error_file.read_text() if error_file and error_file.is_file() else str(error or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Ray's error text ends with the original exception, e.g. "FloatingPointError: ...".
    return lines[-1] if lines else "unknown error"


def _optuna_trials(experiment: Path) -> dict[str, tuple[str, int]]:
    """Tune trial id → (Optuna state, Optuna number), from the experiment's study (if any):
    SQLite `optuna.db`, or the database its `study.yaml` names (e.g. PostgreSQL)."""
    from kp_platform.tune.storage import experiment_study, open_storage

    location = experiment_study(experiment)
    if location is None:
        return {}
    import optuna

    try:
        study = optuna.load_study(study_name=location.study_name,
                                  storage=open_storage(location))
    except KeyError:  # the driver died before it created the study
        return {}
    states = {}
    for trial in study.get_trials(deepcopy=False):
        if "tune_trial_id" in trial.user_attrs:
            states[trial.user_attrs["tune_trial_id"]] = (trial.state.name, trial.number)
    return states


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(rows: list[TrialRow], path: str | Path) -> Path:
    """The report as JSON (what the table shows, plus the curves)."""
    path = Path(path)
    path.write_text(json.dumps([row.__dict__ for row in rows], indent=2) + "\n")
    return path
