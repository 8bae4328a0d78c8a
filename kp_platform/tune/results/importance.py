"""Which sampled parameters mattered: Optuna's fANOVA importances over a sweep's trials.

Under ASHA most trials are stopped early (PRUNED), and Optuna's importances only read COMPLETE
trials, which may be two or three. So the importances are computed on a copy of the study in
memory whose values are comparable across all trials: the final metric when at least
`MIN_TRIALS` trials completed, else the metric at the first rung every trial reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_TRIALS = 4
"""Fewer trials than this say nothing about importances."""


@dataclass(frozen=True)
class Importances:
    """Normalised importances (summing to 1), highest first, and what they were computed on."""

    values: dict[str, float]
    target: str
    """E.g. `val/map at epoch 2 (8 trials)`."""


def parameter_importances(rows: Sequence[Any], study_trials: Mapping[str, Any],
                          metric: str, mode: str = "max") -> Importances | None:
    """fANOVA importances of the sampled parameters (None when there is too little to say).

    Args:
        rows: The report's trials (`TrialRow`: trial_id, curve, optuna_state).
        study_trials: Tune trial id → Optuna FrozenTrial (params and their distributions).
        metric: The metric's name, for the label.
        mode: The sweep's mode.
    """
    import optuna

    scored = [row for row in rows if row.curve and row.trial_id in study_trials]
    complete = [row for row in scored if row.optuna_state == "COMPLETE"]
    if len(complete) >= MIN_TRIALS:
        targets = {row.trial_id: row.curve[-1][1] for row in complete}
        target = f"final {metric} ({len(targets)} completed trials)"
    else:
        epoch = min((row.curve[0][0] for row in scored), default=0)
        targets = {row.trial_id: value for row in scored for e, value in row.curve
                   if e == epoch}
        target = f"{metric} at epoch {epoch} ({len(targets)} trials)"
    if len(targets) < MIN_TRIALS:
        return None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory"
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for trial_id, value in targets.items():
        frozen = study_trials[trial_id]
        study.add_trial(optuna.trial.create_trial(
            params=frozen.params, distributions=frozen.distributions, value=value))
    # fANOVA (a random forest): steadier than PED-ANOVA on the ten-odd trials of a small sweep;
    # seeded, so a report read twice says the same.
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError):  # e.g. no parameter shared by every trial
        return None
    return Importances(values={k: float(v) for k, v in values.items()}, target=target)


def format_importances(importances: Importances | None) -> str:
    """Text lines: one parameter per line with a bar, or why there are none."""
    if importances is None:
        return f"parameter importances: too few trials (at least {MIN_TRIALS} with a value)"
    lines = [f"parameter importances (fANOVA on {importances.target}):"]
    width = max(len(name) for name in importances.values)
    for name, value in importances.values.items():
        lines.append(f"  {name.ljust(width)}  {value:5.3f}  {'#' * round(value * 40)}")
    return "\n".join(lines)
