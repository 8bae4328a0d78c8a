"""Runs a sweep: Ray (embedded or a cluster), the Tuner, restoring an interrupted experiment."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from kp_platform.config import config_to_dict
from kp_platform.console import RAY_ANALYSIS, TUNE_CONTROLLER, logger_level
from kp_platform.errors import InputError
from kp_platform.tune.driver.lock import DriverLock
from kp_platform.tune.experiment import DRIVER_FILE, LOCK_FILE, RUNGS_FILE, SPACE_COPY
from kp_platform.tune.spec.filesystems import on_local_disk
from kp_platform.tune.spec.parameters import SpaceSampler
from kp_platform.tune.spec.settings import RaySettings
from kp_platform.tune.spec.space import SweepSpec
from kp_platform.tune.storage import open_storage, study_location, write_study_file

AUTH_MODE_VAR = "RAY_AUTH_MODE"
"""Ray's token-authentication switch (`token` or `disabled`)."""


def choose_token_auth() -> None:
    """Token authentication for the embedded Ray this process may start, set by Ray's own
    switch (`RAY_AUTH_MODE=token`, as on the project's clusters) instead of left to Ray's default
    for a new local cluster: the same mode, without the warning line Ray logs on every start
    when the switch is unset. Call it before Ray is imported: Ray reads the mode at import, and
    set later the driver and the cluster it starts disagree and cannot connect. Nothing changes
    where Ray is already imported, the mode is set, or `RAY_ADDRESS` names a cluster (whose mode
    is its own)."""
    if "ray" not in sys.modules and not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault(AUTH_MODE_VAR, "token")


def init_ray(settings: RaySettings) -> None:
    """Starts an embedded local Ray (`settings`) unless one is running or `RAY_ADDRESS` names a
    cluster."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        try:
            ray.init()  # inside `ray job submit`: passing resources here raises
        except ConnectionError as exc:
            from kp_platform.errors import ExternalError, first_line

            raise ExternalError(f"cannot join the Ray cluster: {first_line(exc)}",
                                f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}") from None
        return
    # log_to_driver off: a trial writes what it prints to its trial.log and its failure to
    # error.txt; streamed worker output only added Ray's own shutdown noise to the screen (a
    # stopped trial's worker printing "Exception ignored ... SystemExit" as it was killed).
    # Ray's and Tune's INFO lines (a local instance started, result files written, the run
    # time) stay off the screen: the sweep prints its own events and Tune's table.
    ray.init(num_cpus=settings.num_cpus or os.cpu_count(), num_gpus=settings.num_gpus,
             include_dashboard=False, object_store_memory=settings.object_store_mb * 1024 * 1024,
             log_to_driver=False, logging_level=logging.WARNING)


def check_resources(spec: SweepSpec) -> None:
    """Refuses a per-trial request that no alive node can hold (Tune would wait forever)."""
    import ray

    if not spec.resources.check_cluster:
        return
    from kp_platform.tune.driver.trial_devices import type_resource

    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    kind = spec.resources.accelerator_type
    if kind:
        need[type_resource(kind)] = 1.0  # the node has GPUs of that type
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(res.get(k, 0.0) >= v for k, v in need.items() if v) for res in nodes):
        return
    have = {k: v for k, v in ray.cluster_resources().items()
            if k in ("CPU", "GPU") or k.startswith("accelerator_type:")}
    asked = f" of type {kind}" if kind else ""
    raise InputError(
        f"resources: a trial asks for {spec.resources.cpu:g} CPU and {spec.resources.gpu:g} GPU"
        f"{asked} but no node of the Ray cluster has that (cluster: {have}); lower the request, "
        "or set resources.check_cluster=false on an autoscaling cluster", str(spec.path))


def check_local_resources(spec: SweepSpec) -> None:
    """Before an embedded Ray starts: its one node is this machine, so a per-trial request
    that this machine cannot hold is refused without starting Ray (`check_resources` covers
    a running Ray or a cluster)."""
    import ray

    if not spec.resources.check_cluster or os.environ.get("RAY_ADDRESS") or ray.is_initialized():
        return
    have = {"CPU": float(spec.ray.num_cpus or os.cpu_count() or 1),
            "GPU": float(_local_gpus() if spec.ray.num_gpus is None else spec.ray.num_gpus)}
    if spec.resources.cpu <= have["CPU"] and spec.resources.gpu <= have["GPU"]:
        return
    raise InputError(
        f"resources: a trial asks for {spec.resources.cpu:g} CPU and {spec.resources.gpu:g} GPU "
        f"but the embedded Ray on this machine would have {have['CPU']:g} CPU and "
        f"{have['GPU']:g} GPU (ray.num_cpus; ray.num_gpus, by default the GPUs torch sees); "
        "lower the request",
        str(spec.path))


def _local_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def run_sweep(spec: SweepSpec, resume: bool = False) -> Any:
    """Runs (or restores and finishes) the sweep; returns Tune's ResultGrid.

    Every configuration the space can produce and every file its trials read are checked
    first (`preflight`), before Ray starts. An experiment folder that Tune can restore is always
    restored: finished trials are kept, interrupted ones continue from their last checkpoint.

    Args:
        spec: The validated search space.
        resume: Insist on restoring (an error when there is nothing to restore).
    """
    from kp_platform.tune.driver.trial_devices import check_trial_devices
    from kp_platform.tune.spec.preflight import preflight

    preflight(spec)  # before Ray: a bad sweep fails in seconds, naming the file or key
    check_trial_devices(spec)
    check_local_resources(spec)
    # Before Ray too: a second driver on this experiment stops here, naming the first.
    with DriverLock(spec.experiment_dir):
        return _run_locked(spec, resume)


def _run_locked(spec: SweepSpec, resume: bool) -> Any:
    import optuna
    from ray import tune

    from kp_platform.tune.driver.progress import use_classic_output

    init_ray(spec.ray)
    check_resources(spec)
    # Not "a new study created in RDB" on the screen: `kp sweep dashboard` shows the study.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Snapshot the experiment often on a local disk: a trial started after the last snapshot is
    # lost (and re-suggested) when the driver dies, and trials are far longer than a snapshot.
    # On remote storage each snapshot uploads the whole state: see SweepSpec.snapshot_period.
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(spec.snapshot_period())
    # ...and each reported checkpoint forces one anyway; Tune would warn about that every time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    use_classic_output()  # the engine whose status table takes the sweep's columns (progress.py)
    experiment = spec.experiment_dir
    location = _tune_path(spec)
    trainable = build_trainable(spec)
    if tune.Tuner.can_restore(location):
        _check_same_sweep(spec, experiment)
        if not spec.remote_storage:
            _check_restorable(experiment)
        tuner = tune.Tuner.restore(location, trainable, resume_errored=True)
    elif resume:
        raise InputError("nothing to resume: no Tune experiment here", location)
    else:
        if any(p.name not in (LOCK_FILE, DRIVER_FILE) for p in experiment.iterdir()):
            raise InputError("the experiment folder exists but Tune cannot restore it; "
                             "choose another name or storage_path", str(experiment))
        (experiment / SPACE_COPY).write_text(_settings_text(spec))
        tuner = build_tuner(spec, trainable)
    write_study_file(study_location(spec), experiment)
    # Tune's controller logs each failed trial attempt with the whole traceback. The traceback
    # stays in the trial's error.txt, the status table marks the trial ERROR, and `kp sweep run`
    # ends with one line per failed trial: the controller logs only what is critical meanwhile.
    # The results' reader would warn about a trial the time budget ended before it reported:
    # the sweep's progress line says that in words (console.RAY_ANALYSIS).
    with (logger_level(TUNE_CONTROLLER, logging.CRITICAL),
          logger_level(RAY_ANALYSIS, logging.ERROR)):
        results = tuner.fit()
    tidy_orphans(spec, results)
    return results


def build_trainable(spec: SweepSpec) -> Any:
    """The trainable with its base config bound and its per-trial resources."""
    from ray import tune

    from kp_platform.tune.driver.lifecycle import graceful
    from kp_platform.tune.driver.trial_devices import trial_base, trial_resources
    from kp_platform.tune.trial.trainable import run_trial

    experiment = None if spec.remote_storage else str(spec.experiment_dir)
    # trainer.devices follows resources.gpu: N whole GPUs run the trial as N DDP processes.
    bound = graceful(tune.with_parameters(run_trial, base=config_to_dict(trial_base(spec)),
                                          experiment_dir=experiment))
    return tune.with_resources(bound, trial_resources(spec))


def build_tuner(spec: SweepSpec, trainable: Any) -> Any:
    """The Tuner: Optuna (PRUNED-aware) proposes, ASHA stops on evaluation epochs."""
    from ray import tune

    from kp_platform.tune.driver.lifecycle import WaitForStoppingTrials
    from kp_platform.tune.driver.progress import SweepEvents, build_reporter

    search = build_searcher(spec)
    scheduler = build_scheduler(spec)
    events = SweepEvents(spec, scheduler)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=search,
            scheduler=scheduler,
            num_samples=spec.num_samples,
            time_budget_s=spec.time_budget_s,
            # TPE proposing many configurations blind wastes its model.
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=_storage_root(spec),
            checkpoint_config=tune.CheckpointConfig(
                # Tune also keeps the latest, for resuming; 4, not 2: a restored driver resumes
                # from its last snapshot, whose "latest" may be a report older than the newest.
                num_to_keep=4,
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[events] if spec.remote_storage else [events, WaitForStoppingTrials()],
            progress_reporter=build_reporter(spec),
            # With remote storage the run directories live in Tune's trial folders.
            sync_config=tune.SyncConfig(sync_artifacts=spec.remote_storage),
            verbose=1,
        ),
    )


def build_scheduler(spec: SweepSpec) -> Any:
    """ASHA on evaluation epochs (`scheduler: asha`), or FIFO: every trial runs to the end."""
    from ray.tune.schedulers import FIFOScheduler

    from kp_platform.tune.driver.rungs import RecordingASHA

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    return RecordingASHA(
        # The report reads the live decisions back (which trial stopped at which cut-off).
        log_path=None if spec.remote_storage else spec.experiment_dir / RUNGS_FILE,
        time_attr="epoch",
        grace_period=spec.asha.grace_period,
        reduction_factor=spec.asha.reduction_factor,
        max_t=spec.asha.max_epochs,
    )


def build_searcher(spec: SweepSpec) -> Any:
    """The Optuna search, its study persisted (SQLite in the experiment folder by default)."""
    from kp_platform.tune.driver.searcher import PrunedAwareOptunaSearch, build_sampler

    points = spec.points_to_evaluate()
    return PrunedAwareOptunaSearch(
        # Only ASHA stops trials early: under FIFO a trial that ends is complete.
        max_epochs=spec.asha.max_epochs if spec.scheduler == "asha" else None,
        space=SpaceSampler(spec.parameters),
        metric=spec.metric,
        mode=spec.mode,
        points_to_evaluate=points or None,
        base_point=points[0] if spec.search.evaluate_base else None,
        sampler=build_sampler(spec.search),
        study_name=spec.name,
        # The password (if any) is read per connection: never part of what Tune pickles.
        storage=open_storage(study_location(spec),
                             local_disk=on_local_disk(spec.experiment_dir)),
    )


def trial_name(trial: Any) -> str:
    """Short, stable trial names and folder names, `trial_<id>`."""
    from kp_platform.tune.trial.trainable import trial_dir_name

    return trial_dir_name(trial.trial_id)


def tidy_orphans(spec: SweepSpec, results: Any) -> list[Path]:
    """Moves trial folders Tune forgot (started after the last snapshot of a killed driver).

    Returns:
        The folders moved to `<experiment>/orphans/`.
    """
    if spec.remote_storage:
        return []
    known = {Path(r.path).name for r in results}
    moved = []
    for folder in sorted(spec.experiment_dir.glob("trial_*")):
        if folder.is_dir() and folder.name not in known:
            target = spec.experiment_dir / "orphans" / folder.name
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(folder), str(target))
            moved.append(target)
    _fail_orphan_study_trials(spec, {r.metrics.get("trial_id") for r in results})
    return moved


def _fail_orphan_study_trials(spec: SweepSpec, tune_ids: set[Any]) -> None:
    """Marks Optuna trials left RUNNING by a killed driver as FAIL, so TPE ignores them."""
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=open_storage(study_location(spec)))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("tune_trial_id") not in tune_ids:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _tune_path(spec: SweepSpec) -> str:
    return f"{spec.storage_path.rstrip('/')}/{spec.name}" if spec.remote_storage else str(
        spec.experiment_dir)


def _storage_root(spec: SweepSpec) -> str:
    return spec.storage_path if spec.remote_storage else str(spec.experiment_dir.parent)


def _settings_text(spec: SweepSpec) -> str:
    data = {
        "name": spec.name,
        "base": config_to_dict(spec.base),
        "space": [{"key": p.key, "kind": p.kind, "values": list(p.values),
                   "when": {k: list(v) for k, v in p.when}} for p in spec.parameters],
        "metric": spec.metric, "mode": spec.mode,
        "asha": vars(spec.asha), "eval_every": spec.eval_every,
    }
    if spec.scheduler != "asha":  # kept out for ASHA: experiments from before the setting
        data["scheduler"] = spec.scheduler
    if spec.time_budget_s is not None:  # the report names the trials the budget ended
        data["time_budget_s"] = spec.time_budget_s
    return yaml.safe_dump(data, sort_keys=False)


def _check_restorable(experiment: Path) -> None:
    """Fails with one line when a file Tune restores the run from is unreadable.

    Tune copies its state into the experiment folder without an atomic rename: a driver killed
    mid-copy can leave a file cut short. Tune would log the failed restore, start the sweep
    afresh with a generator that believes it already made every trial, and wait forever. (A
    cut-short searcher state is rebuilt from the study instead: tune/driver/searcher.py.)
    """
    for pattern, load in (("experiment_state-*.json", json.loads),
                          ("search_gen_state-*.json", pickle.loads)):
        newest = max(experiment.glob(pattern), default=None)
        if newest is None:
            continue
        try:
            load(newest.read_bytes())
        except (ValueError, EOFError, pickle.UnpicklingError):
            raise InputError("Tune's state file is cut short (the last driver died while "
                             "writing it): the sweep cannot be resumed; start it under another "
                             "name (its finished trials stay in this folder and its study)",
                             str(newest)) from None


def _check_same_sweep(spec: SweepSpec, experiment: Path) -> None:
    saved = experiment / SPACE_COPY
    if not saved.is_file():
        return
    ours, theirs = yaml.safe_load(_settings_text(spec)), yaml.safe_load(saved.read_text())
    for settings in (ours, theirs):
        settings.pop("time_budget_s", None)  # a resumed sweep may be given more (or less) time
    if ours != theirs:
        raise InputError("this experiment was started with another search space, base config "
                         "or ASHA settings; use another name or storage_path", str(experiment))
