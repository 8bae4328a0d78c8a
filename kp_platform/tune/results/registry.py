"""The sweep's best checkpoint: copied into the experiment and logged as a wandb `model`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kp_platform.errors import ExternalError, InputError, first_line
from kp_platform.tune.experiment import BEST_DIR, CHECKPOINT_FILE, RUN_CONFIG
from kp_platform.tune.spec.space import SweepSpec

"""`<experiment>/best/`: best.ckpt, best.json and the registration's wandb run."""


def register_best(spec: SweepSpec, results: Any, plots: Sequence[Path] = ()
                  ) -> dict[str, Any] | None:
    """Registers the best checkpoint of the best trial (not its latest).

    Writes `<experiment>/best/best.ckpt` and `best.json` and, unless wandb is disabled, logs a
    run of job type `register` with artifact `<sweep>-best` (type `model`, alias `best`) and
    the report's `plots` as images (`report/<name>`).

    Returns:
        What `best.json` holds, or None when no trial reported the metric.
    """
    try:
        best = results.get_best_result(spec.metric, spec.mode, scope="all")
    except RuntimeError:
        return None
    if not best.metrics or not best.best_checkpoints:
        return None  # e.g. every trial failed before its first evaluation
    try:
        checkpoint = best.get_best_checkpoint(spec.metric, spec.mode)
    except RuntimeError:  # no checkpoint carries the metric
        return None
    if checkpoint is None:
        return None
    folder = spec.experiment_dir / BEST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "best.ckpt"
    with checkpoint.as_directory() as source:
        shutil.copyfile(Path(source) / CHECKPOINT_FILE, target)
    score = _checkpoint_score(best, checkpoint, spec.metric)
    trial_dir = Path(best.path)
    config_file = trial_dir / RUN_CONFIG
    info = {
        "trial_id": best.metrics.get("trial_id"),
        spec.metric: score,
        "checkpoint": str(target),
        "tune_checkpoint": checkpoint.path,
        "config": yaml.safe_load(config_file.read_text()) if config_file.is_file() else None,
        "artifact": f"{spec.name}-best",
        "wandb": {"project": spec.base.logging.wandb.project,
                  "entity": spec.base.logging.wandb.entity, "registry": spec.wandb.registry},
    }
    (folder / "best.json").write_text(json.dumps(info, indent=2) + "\n")
    if spec.base.logging.wandb.mode != "disabled":
        info["wandb_mode"] = _log_registration(spec, target, info, folder, plots)
        (folder / "best.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _checkpoint_score(result: Any, checkpoint: Any, metric: str) -> float | None:
    for ckpt, metrics in result.best_checkpoints:
        if ckpt.path == checkpoint.path:
            return metrics.get(metric)
    return None


def _log_registration(spec: SweepSpec, checkpoint: Path, info: dict[str, Any],
                      folder: Path, plots: Sequence[Path]) -> str:
    """One wandb run of job type `register` that logs the artifact and the report's plots;
    returns the mode used."""
    import wandb

    from kp_platform.training.wandb_logging import log_model_artifact, resolve_wandb_mode

    cfg = spec.base.logging.wandb
    mode = resolve_wandb_mode(cfg.mode)
    os.environ.setdefault("WANDB_SILENT", "true")  # as for the trials' runs
    try:
        run = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group,
                         job_type="register", name=f"{spec.name}-register", dir=str(folder),
                         mode=mode, config={"sweep": spec.name, **info}, reinit="create_new")
        try:
            metadata = {k: info[k] for k in ("trial_id", spec.metric, "config")}
            log_model_artifact(run, checkpoint, name=info["artifact"], metadata=metadata,
                               aliases=["best"])
            if plots:
                run.log({f"report/{Path(p).stem}": wandb.Image(str(p)) for p in plots})
        finally:
            run.finish()
    except Exception as exc:  # noqa: BLE001 - wandb raises many types (network, auth, usage)
        raise ExternalError(f"the best checkpoint is in {folder}, but logging it to wandb "
                            f"failed: {first_line(exc)}", str(spec.experiment_dir)) from None
    return mode


def offline_runs(experiment: str | Path) -> list[Path]:
    """Every offline wandb run under the experiment folder (trials and registration)."""
    return sorted(Path(experiment).glob("**/wandb/offline-run-*"))


def sync_experiment(experiment: str | Path, dry_run: bool = False) -> list[Path]:
    """Uploads the offline runs with `wandb sync`, then links `<sweep>-best` to the registry.

    Args:
        experiment: The experiment folder.
        dry_run: Only list what would be synced (no network, no credentials needed).

    Returns:
        The offline run folders.

    Raises:
        InputError: nothing to sync, or no wandb credentials.
        ExternalError: `wandb sync` or the registry link failed.
    """
    from kp_platform.training.wandb_logging import has_wandb_credentials

    runs = offline_runs(experiment)
    if not runs:
        raise InputError("no offline wandb runs to sync", str(experiment))
    if dry_run:
        return runs
    if not has_wandb_credentials():
        raise InputError("wandb sync needs credentials: run `wandb login` or set "
                         "WANDB_API_KEY", str(experiment))
    wandb_cli = Path(sys.executable).parent / "wandb"
    try:
        done = subprocess.run([str(wandb_cli), "sync", *map(str, runs)], capture_output=True,
                              text=True)
    except OSError as exc:
        raise ExternalError(f"cannot run {wandb_cli}: {exc.strerror}", str(experiment)) from None
    print(done.stdout, end="")
    if done.returncode != 0:
        said = ([line for line in done.stderr.splitlines() if line.strip()]
                or [line for line in done.stdout.splitlines() if line.strip()])
        raise ExternalError(f"`wandb sync` failed (exit status {done.returncode})"
                            + (f": {said[-1]}" if said else ""), str(experiment))
    best = Path(experiment) / BEST_DIR / "best.json"
    if best.is_file():
        try:
            _link_to_registry(json.loads(best.read_text()))
        except Exception as exc:  # noqa: BLE001 - wandb's API raises many types
            raise ExternalError(f"synced, but linking to the wandb registry failed: "
                                f"{first_line(exc)}", str(experiment)) from None
    return runs


def _link_to_registry(info: dict[str, Any]) -> None:
    """Links the synced artifact into the wandb registry named in the sweep (online only)."""
    settings = info.get("wandb") or {}
    if not settings.get("registry"):
        return
    import wandb

    api = wandb.Api()
    entity = settings.get("entity") or api.default_entity
    artifact = api.artifact(f"{entity}/{settings['project']}/{info['artifact']}:best",
                            type="model")
    artifact.link(settings["registry"], aliases=["best"])
