"""`kp fit`: inspect the data, calibrate, plan, then the sweep, its best checkpoint evaluated,
rendered and reported; all inside the budget."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kp_platform.config import Config, apply_overrides, config_to_dict
from kp_platform.config.auto import (
    resolve_from_data,
    search_val_fraction,
    val_fraction_for,
)
from kp_platform.data import CocoKeypoints, resolve_channels, split_train_val
from kp_platform.errors import InputError
from kp_platform.fit.budget import format_duration
from kp_platform.fit.inspect import DataFacts, inspect_data
from kp_platform.fit.plan import (
    Schedule,
    as_single_run,
    base_overrides,
    input_size_for,
    metric_for,
    schedule,
    search_space,
)

SPACE_FILE = "space.yaml"
"""The sweep file `kp fit` writes and runs: `kp sweep run` of it repeats the fit's sweep."""
SUMMARY_FILE = "fit.json"
MIN_BUDGET_S = 120.0
"""Below this no budget holds Ray's start, a calibration run and a sweep of several trials."""
FINISH_RESERVE_S = 15.0
"""Kept back for registering, evaluating and rendering the best checkpoint (plus
`FINISH_RESERVE_SHARE` of the budget): the sweep's time limit ends that long before the budget
does."""
FINISH_RESERVE_SHARE = 0.03


@dataclass(frozen=True)
class FitRequest:
    """What the user asked for."""

    train: Path
    test: Path | None
    budget_s: float
    folder: Path
    """The fit's folder: the sweep file, the experiment, the evaluation."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


def run_fit(request: FitRequest) -> int:
    """Runs `kp fit`; returns the exit status (that of the sweep, 0 when it found a best).

    Raises:
        InputError: bad data, a budget too small (saying the minimum), a folder that holds an
            earlier fit.
    """
    started = time.monotonic()
    _check_request(request)
    facts = inspect_data(request.train)
    if request.test:
        _check_test_set(request.test, facts)
    input_size, why_size = input_size_for(facts)
    metric, mode, why_metric = metric_for(facts)
    space, why_space = search_space(input_size)
    overrides = base_overrides(facts, input_size)
    base = apply_overrides(Config(), overrides)
    # Calibration times a trial of a search, on the split the search ranks its trials by.
    searching = apply_overrides(
        base, {"data.val_fraction": search_val_fraction(base, ranking=True)})
    full_epochs, why_epochs = _single_run_epochs(searching, facts)
    _say("data", f"{facts.path}: {facts.images} images, {facts.keypoints} keypoints, "
         f"{len(facts.channels)} channels ({len(facts.single_instance)} with at most one "
         "keypoint per image)")
    _say("input size", why_size)
    _say("flip pairs", ", ".join("/".join(p) for p in facts.flip_pairs) + " (from the names: "
         "horizontal flips in the augmentation)" if facts.flip_pairs else
         "none (no channel names differ only by left/right: no horizontal flips)")
    _say("metric", why_metric)
    _say("search space", why_space)
    _say("single run", f"trainer.max_epochs = {why_epochs}: the defaults' length on the "
         "sweep's train/validation split, and every trial's")

    from kp_platform.tune.driver.runner import init_ray
    from kp_platform.tune.spec.settings import RaySettings

    init_ray(RaySettings())
    slots = _parallel_trials(request)
    _say("calibration", f"room for {slots} trials at a time; timing one short run on "
         f"{request.cpus_per_trial:g} CPU and {request.gpus_per_trial:g} GPU ...")
    from kp_platform.fit.calibrate import calibrate

    timing = calibrate(config_to_dict(searching), request.cpus_per_trial,
                       request.gpus_per_trial)
    left = request.budget_s - (time.monotonic() - started)
    sweep_s = left - FINISH_RESERVE_S - FINISH_RESERVE_SHARE * request.budget_s
    plan = schedule(timing, sweep_s, slots, full_epochs)
    if plan.num_samples == 1:
        plan = as_single_run(plan, *_single_run_epochs(base, facts))
    for line in plan.reasons:
        _say("plan", line)
    space_file = write_space(request, overrides, space, metric, mode, plan, slots, sweep_s)
    _say("sweep file", f"{space_file} (`kp sweep run {space_file}` repeats this sweep)")

    from kp_platform.tune import load_space
    from kp_platform.tune.driver.runner import run_sweep
    from kp_platform.tune.experiment import BEST_DIR
    from kp_platform.tune.results.summary import finish_sweep

    spec = load_space(space_file)
    status = finish_sweep(spec, run_sweep(spec))
    best = spec.experiment_dir / BEST_DIR / "best.ckpt"
    summary: dict[str, Any] = {
        "train": str(facts.path), "test": str(request.test) if request.test else None,
        "budget_s": request.budget_s, "metric": metric, "mode": mode,
        "input_size": input_size, "flip_pairs": facts.flip_pairs,
        "timing": vars(timing), "schedule": {k: v for k, v in vars(plan).items()
                                             if k != "reasons"},
        "space_file": str(space_file), "experiment": str(spec.experiment_dir),
        "best_checkpoint": str(best) if best.is_file() else None,
    }
    if best.is_file() and request.test:
        summary["test_metrics"] = str(_evaluate(best, request.test, request.folder))
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (request.folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"kp fit: {format_duration(summary['wall_s'])} of the "
          f"{format_duration(request.budget_s)} budget; summary: {request.folder / SUMMARY_FILE}")
    return status


def _say(topic: str, text: str) -> None:
    print(f"{topic + ':':<14}{text}", flush=True)


def _check_request(request: FitRequest) -> None:
    if request.budget_s < MIN_BUDGET_S:
        raise InputError(f"a budget of {format_duration(request.budget_s)} cannot hold Ray's "
                         "start, a calibration run and several trials: give at least "
                         f"{format_duration(MIN_BUDGET_S)}", "--budget")
    if (request.folder / SPACE_FILE).exists():
        raise InputError(f"holds an earlier fit: continue it with `kp sweep run "
                         f"{request.folder / SPACE_FILE}`, or choose another --out",
                         str(request.folder))
    if request.cpus_per_trial <= 0 or request.gpus_per_trial < 0:
        raise InputError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0", "kp fit")


def _check_test_set(path: Path, facts: DataFacts) -> None:
    """The test set must hold the training set's channels (it is read, images opened)."""
    coco = CocoKeypoints.load(path)
    names = list(resolve_channels(None, coco.categories, str(path)).names)
    if names != facts.channels:
        missing = [n for n in facts.channels if n not in names]
        raise InputError(f"its keypoint types differ from the training set's (missing: "
                         f"{missing or 'none'}; the training set has {facts.channels})",
                         str(path))


def _single_run_epochs(base: Config, facts: DataFacts) -> tuple[int, str]:
    """The epochs a run of the base config trains (`trainer.max_epochs: auto` on the base's
    split: a search's, `search_val_fraction`, or a single run's)."""
    fraction = val_fraction_for(base.data.val_fraction, facts.images)
    train_ids, _ = split_train_val(list(range(facts.images)), fraction, base.data.split_seed)
    config, chosen = resolve_from_data(base, facts.channels, facts.single_instance,
                                       len(train_ids))
    epochs = int(config.trainer.max_epochs)
    return epochs, chosen.get("trainer.max_epochs", str(epochs))


def _parallel_trials(request: FitRequest) -> int:
    """How many trials the Ray cluster holds at once with the per-trial request."""
    import ray

    have = ray.cluster_resources()
    slots = int(have.get("CPU", 0) // request.cpus_per_trial)
    if request.gpus_per_trial:
        slots = min(slots, int(have.get("GPU", 0) // request.gpus_per_trial))
    if slots < 1:
        raise InputError(f"a trial asks for {request.cpus_per_trial:g} CPU and "
                         f"{request.gpus_per_trial:g} GPU; the Ray cluster has "
                         f"{have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU",
                         "--cpus-per-trial/--gpus-per-trial")
    return slots


def write_space(request: FitRequest, overrides: dict[str, Any], space: dict[str, Any],
                metric: str, mode: str, plan: Schedule, slots: int, sweep_s: float) -> Path:
    """The sweep file of the fit, in the fit's folder (the experiment lives beside it)."""
    folder = request.folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    share = 1 if plan.num_samples > 1 else slots
    data = {
        "name": sweep_name(folder),
        "base": {"overrides": overrides},
        "space": space,
        "metric": metric,
        "mode": mode,
        "search": {"seed": 0, "startup_trials": max(2, min(10, plan.num_samples // 3)),
                   "evaluate_base": True},
        "asha": {"grace_period": plan.grace_period, "reduction_factor": plan.reduction_factor,
                 "max_epochs": plan.max_epochs},
        "eval_every": plan.eval_every,
        "num_samples": plan.num_samples,
        "max_concurrent": slots if plan.num_samples > 1 else 1,
        "time_budget_s": round(sweep_s, 1),
        # The defaults alone (a budget too short for a search) get every slot's resources.
        "resources": {"cpu": request.cpus_per_trial * share,
                      "gpu": request.gpus_per_trial * share},
        "storage_path": str(folder),
    }
    header = (f"# Written by `kp fit` for {request.train} with a budget of "
              f"{format_duration(request.budget_s)}: a normal sweep file; edit it and run it "
              "again with `kp sweep run` (give it another `name` to keep this experiment).\n")
    path = folder / SPACE_FILE
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_name(folder: Path) -> str:
    """The sweep's name (its experiment folder inside the fit's, its wandb group and the
    `<name>-best` artifact): the fit folder's name in the characters a sweep name allows."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", folder.name).lstrip("-._") or "fit"


def _evaluate(checkpoint: Path, test: Path, folder: Path) -> Path:
    """The best checkpoint on the test set: the metrics table, a JSON file, a picture."""
    from kp_platform.inference import Detector, evaluate_checkpoint, render_prediction_grid
    from kp_platform.metrics import format_metrics

    metrics = evaluate_checkpoint(checkpoint, test)
    print(f"test set: {test}")
    print(format_metrics(metrics))
    out = folder / "test_metrics.json"
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    picture = render_prediction_grid(Detector.from_checkpoint(checkpoint), test,
                                     folder / "predictions.png")
    print(f"wrote {out}\nwrote {picture} (labelled: circles; predicted: crosses)")
    return out
