"""`kp sweep report DIR`: one row per trial (status, sampled values, best metric, epochs), a plot.

Read from what Tune and the trials left in the experiment folder, so it works during a sweep,
after it, and after a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kp_platform.console import RAY_ANALYSIS, logger_level
from kp_platform.errors import InputError
from kp_platform.tune.experiment import RUN_CONFIG, SPACE_COPY, error_line, read_rungs

METRIC = "val/map"


@dataclass
class TrialRow:
    """One trial as the report shows it."""

    trial_id: str
    status: str
    """completed, stopped (ASHA), stopped (time budget), stopped, errored, running or
    pending."""
    values: dict[str, Any]
    best: float | None
    epochs: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(epoch, metric) at every report."""
    reason: str = ""
    optuna_state: str = ""
    base: bool = False
    """The trial evaluated the base config's own values (`search.evaluate_base`)."""


def collect_trials(experiment: str | Path, metric: str = METRIC,
                   study_trials: dict[str, Any] | None = None,
                   mode: str = "max") -> list[TrialRow]:
    """The trials of a Tune experiment folder, in creation order.

    Args:
        mode: The sweep's mode: a trial's best is its highest (max) or lowest (min) value.
        study_trials: `optuna_trials_by_tune_id(experiment)`, when the caller has it already.

    Raises:
        InputError: not a Tune experiment folder.
    """
    from ray.tune import ExperimentAnalysis

    try:
        # Absolute: Ray 2.60 reads a relative path as a URI without a scheme and refuses it.
        with logger_level(RAY_ANALYSIS, logging.ERROR):
            analysis = ExperimentAnalysis(str(Path(experiment).resolve()))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not a sweep experiment folder ({reason})", str(experiment)) from None
    frames = analysis.trial_dataframes
    optuna_trials = (optuna_trials_by_tune_id(Path(experiment)) if study_trials is None
                     else study_trials)
    settings = saved_settings(experiment)
    fifo = settings.get("scheduler", "asha") == "fifo"
    # Who ASHA stopped, from its recorded decisions: a trial can also end early because the
    # sweep's time budget ran out, or (FIFO only) because it stopped itself (early stopping).
    asha_stops = {d.trial_id for d in read_rungs(experiment) if d.stopped}
    early = ("stopped (time budget)" if settings.get("time_budget_s") else
             "completed" if fifo else "stopped")
    full = (settings.get("asha") or {}).get("max_epochs")
    rows = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        curve: list[tuple[int, float]] = []
        if frame is not None and metric in frame and "epoch" in frame:
            curve = [(int(e), float(m)) for e, m in zip(frame["epoch"], frame[metric],
                                                        strict=True) if m == m]
        epochs = max((e for e, _ in curve), default=0)
        study_trial = optuna_trials.get(trial.trial_id)
        rows.append(TrialRow(
            trial_id=trial.trial_id,
            status=_status(trial, epochs, full or _max_epochs(trial),
                           "stopped (ASHA)" if trial.trial_id in asha_stops else early),
            values=dict(trial.config),
            best=_best((m for _, m in curve), mode),
            epochs=epochs,
            curve=curve,
            reason=_error_reason(trial),
            optuna_state=study_trial.state.name if study_trial else "",
            base=bool(study_trial and study_trial.user_attrs.get("base_config")),
        ))
    # Suggestion order (Optuna's trial number); Tune lists trials in no documented order.
    order = {trial_id: t.number for trial_id, t in optuna_trials.items()}
    return sorted(rows, key=lambda row: order.get(row.trial_id, len(order)))


def _best(values: Any, mode: str) -> float | None:
    """The best of `values` under the sweep's mode (None when there are none)."""
    return (min if mode == "min" else max)(values, default=None)


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


def _status(trial: Any, epochs: int, max_epochs: int, stopped: str) -> str:
    """`stopped`: what ended the trial if it ended before `max_epochs` (Tune records such a
    trial as TERMINATED too)."""
    if trial.status == "ERROR":
        return "errored"
    if trial.status != "TERMINATED":
        return trial.status.lower()
    return "completed" if 0 < max_epochs <= epochs else stopped


def saved_settings(experiment: str | Path) -> dict[str, Any]:
    """The sweep settings `run_sweep` kept in the experiment folder (empty when absent)."""

    saved = Path(experiment) / SPACE_COPY
    return (yaml.safe_load(saved.read_text()) if saved.is_file() else None) or {}


def _max_epochs(trial: Any) -> int:
    """The trial's epochs from its own config (experiments from before the settings copy);
    0 when it has none (it never started)."""
    config_file = Path(trial.path) / RUN_CONFIG
    if config_file.is_file():
        return int(yaml.safe_load(config_file.read_text())["trainer"]["max_epochs"])
    return 0


def _error_reason(trial: Any) -> str:
    if trial.status != "ERROR":
        return ""
    return error_line(trial.path, None)


def optuna_trials_by_tune_id(experiment: Path) -> dict[str, Any]:
    """Tune trial id → Optuna's FrozenTrial, from the experiment's study (empty if none):
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
    trials = {}
    for trial in study.get_trials(deepcopy=False):
        if "tune_trial_id" in trial.user_attrs:
            trials[trial.user_attrs["tune_trial_id"]] = trial
    return trials


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(rows: list[TrialRow], path: str | Path) -> Path:
    """The report as JSON (what the table shows, plus the curves)."""
    path = Path(path)
    path.write_text(json.dumps([row.__dict__ for row in rows], indent=2) + "\n")
    return path


def format_base_vs_best(rows: list[TrialRow], metric: str = METRIC, mode: str = "max") -> str:
    """The sweep's best trial against its base-config trial: what the search bought."""
    scored = [row for row in rows if row.best is not None]
    if not scored:
        return f"no trial reported {metric}"
    sign = -1.0 if mode == "min" else 1.0
    best = max(scored, key=lambda row: sign * row.best)
    line = f"sweep best {metric}: {best.best:.4f} (trial {best.trial_id})"
    base = next((row for row in rows if row.base), None)
    if base is None:
        return line + "; the base config was not evaluated (search.evaluate_base: false)"
    if base.best is None:
        return line + f"; base config (trial {base.trial_id}): no {metric} ({base.status})"
    gain = best.best - base.best
    verdict = (f"the sweep beats its base config ({metric} {gain:+.4f})" if sign * gain > 0
               else "no trial beat the base config")
    return (f"{line}; base config (trial {base.trial_id}, {base.status}): {base.best:.4f}; "
            f"{verdict}")


def rung_cutoffs(decisions: list[Any], reduction_factor: float,
                 mode: str = "max") -> dict[int, float]:
    """Each rung's cut-off after the sweep, over every value it holds (ASHA's formula)."""
    from kp_platform.tune.driver.rungs import asha_cutoff

    values: dict[int, list[float]] = {}
    for decision in decisions:
        values.setdefault(decision.rung, []).append(decision.value)
    return {rung: float(asha_cutoff(v, reduction_factor, mode))
            for rung, v in sorted(values.items())}


def format_rungs(decisions: list[Any], reduction_factor: float, metric: str = METRIC,
                 mode: str = "max", per_trial: bool = True) -> str:
    """ASHA's rungs: how many trials each saw and stopped, its cut-off, and (`per_trial`) who
    stopped where."""
    if not decisions:
        return "ASHA rungs: none recorded (scheduler fifo, or no trial reached a rung)"
    worse = "above" if mode == "min" else "below"
    lines = [f"ASHA rungs (reduction factor {reduction_factor:g}; a trial {worse} the rung's "
             "cut-off when it arrives is stopped):"]
    cutoffs = rung_cutoffs(decisions, reduction_factor, mode)
    for rung, cutoff in cutoffs.items():
        at_rung = [d for d in decisions if d.rung == rung]
        stopped = sum(d.stopped for d in at_rung)
        lines.append(f"  epoch {rung}: {len(at_rung)} trials reached it, {stopped} stopped; "
                     f"cut-off now {cutoff:.4f}")
    for d in decisions if per_trial else []:
        if d.stopped:
            lines.append(f"  trial {d.trial_id} stopped at epoch {d.rung}: {metric} "
                         f"{d.value:.4f} {'>' if mode == 'min' else '<'} cut-off "
                         f"{d.cutoff:.4f}")
    return "\n".join(lines)


@dataclass
class Report:
    """`kp sweep report`'s output: the text it prints and the PNGs it wrote."""

    rows: list[TrialRow]
    text: str
    plots: list[Path]


def make_report(experiment: str | Path, plot: str | Path | None = None,
                brief: bool = False) -> Report:
    """Reads an experiment folder and writes its PNGs: the curves, and the importances.

    The metric and mode are the sweep's own (its `space.yaml` copy in the folder).

    Args:
        experiment: The experiment folder.
        plot: Where the curves go (default `<experiment>/<metric>.png` with `/` as `_`:
            `val_map.png`); the importances go beside it as `importances.png`.
        brief: Leave out of the text what the sweep printed while it ran: the trial table
            (Tune's at the sweep's end) and a line per trial that ASHA stopped.
    """
    from kp_platform.tune.results.importance import format_importances, parameter_importances
    from kp_platform.tune.results.plot import plot_curves, plot_importances

    experiment = Path(experiment)
    study_trials = optuna_trials_by_tune_id(experiment)
    settings = saved_settings(experiment)
    metric, mode = str(settings.get("metric", METRIC)), str(settings.get("mode", "max"))
    rows = collect_trials(experiment, metric, study_trials, mode)
    reduction_factor = float((settings.get("asha") or {}).get("reduction_factor", 2))
    decisions = read_rungs(experiment)
    importances = parameter_importances(rows, study_trials, metric, mode)
    plot = Path(plot) if plot else experiment / f"{metric.replace('/', '_')}.png"
    base = next((row.trial_id for row in rows if row.base), None)
    plots = [plot_curves([(row.trial_id, row.curve) for row in rows],
                         [row.status for row in rows], plot, metric,
                         cutoffs=rung_cutoffs(decisions, reduction_factor, mode),
                         highlight=base)]
    if importances is not None:
        plots.append(plot_importances(importances.values, plot.parent / "importances.png",
                                      f"parameter importance (fANOVA on {importances.target})"))
    sections = [] if brief else [format_table(rows, metric)]
    sections += [format_base_vs_best(rows, metric, mode),
                 format_rungs(decisions, reduction_factor, metric, mode, per_trial=not brief),
                 format_importances(importances)]
    text = "\n\n".join(sections)
    return Report(rows=rows, text=text, plots=plots)
