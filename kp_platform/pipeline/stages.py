"""Running one stage: a sweep, a single training run, or an evaluation of earlier stages.

Every builder here also runs, with placeholder checkpoints, when the pipeline is validated, so a
bad key in stage 3 stops the pipeline before stage 1 trains.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kp_platform.config import Config, all_keys, get_dotted, load_config, read_yaml, set_dotted
from kp_platform.errors import InputError
from kp_platform.pipeline.records import StageRecord, relative
from kp_platform.pipeline.spec import PipelineSpec, StageSpec


class StageFailed(RuntimeError):
    """A stage ran but produced nothing to go on with (e.g. every sweep trial failed)."""


def run_name(pipeline: PipelineSpec, stage: StageSpec) -> str:
    """The sweep or run name, hence the wandb group and artifact prefix: `<pipeline>-<stage>`."""
    return f"{pipeline.name}-{stage.name}"


def training_overrides(pipeline: PipelineSpec, stage: StageSpec,
                       records: Mapping[str, StageRecord] | None) -> dict[str, Any]:
    """A training stage's config overrides, with the stages it starts from resolved.

    Args:
        pipeline: The pipeline.
        stage: A sweep or train stage.
        records: The completed stages; None while validating (a placeholder checkpoint, no
            inherited values).
    """
    values = pipeline.stage_overrides(stage)
    source = stage.architecture_source
    if source and records is not None:
        config = records[source].config or {}
        for key in stage.inherit:
            values[key] = get_dotted(config, key)
    if stage.init_from:
        if records is None:
            checkpoint = pipeline.stage_dir(stage.init_from) / "best.ckpt"
            artifact = f"{pipeline.name}-{stage.init_from}-model"
        else:
            record = records[stage.init_from]
            checkpoint = record.checkpoint_path(pipeline.folder)
            artifact = record.artifact
        # Absolute: sweep trials run in their own working directories.
        values["model.init_from"] = str(Path(checkpoint).absolute())
        values["model.init_artifact"] = artifact
    return values


def build_sweep(pipeline: PipelineSpec, stage: StageSpec, overrides: Mapping[str, Any],
                space_file: Path) -> Any:
    """Writes the stage's resolved search space to `space_file` and loads it (a SweepSpec).

    The file is the sweep file with the stage's `space`, its sweep settings and config
    overrides laid in, named `<pipeline>-<stage>`, its experiment under the stage's folder:
    `kp sweep run space_file` runs the same sweep by hand.
    """
    from kp_platform.tune import load_space
    from kp_platform.tune.spec.space import base_overrides

    data = read_yaml(stage.file)
    if stage.space is not None:
        data["space"] = copy.deepcopy(stage.space)
    base = data.get("base")
    if base is None or isinstance(base, (str, dict)):
        base = {"config": base} if isinstance(base, str) else dict(base or {})
        config_overrides = base_overrides(base.get("overrides"), str(stage.file))
        for key, value in overrides.items():
            if key in all_keys():
                config_overrides[key] = value
            else:
                set_dotted(data, key, value, str(stage.file))
        base["overrides"] = config_overrides
        data["base"] = base
    data["name"] = run_name(pipeline, stage)
    data["storage_path"] = str(pipeline.stage_dir(stage.name))
    space_file.parent.mkdir(parents=True, exist_ok=True)
    space_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        spec = load_space(space_file)
    except InputError as exc:
        raise _in_stage(pipeline, stage, exc) from None
    sampled = [p.key for p in spec.parameters if p.key in stage.inherit]
    if stage.architecture_source and sampled:
        # A sampled backbone or width would not fit the weights the stage starts from.
        raise InputError(f"stage {stage.name!r}: the sweep samples {', '.join(sampled)}, "
                         f"inherited from stage {stage.architecture_source!r}; give the stage "
                         "a `space` without them", str(pipeline.path))
    return spec


def build_train_config(pipeline: PipelineSpec, stage: StageSpec,
                       overrides: Mapping[str, Any]) -> Config:
    """The stage's config: defaults, its config file, then the overrides."""
    try:
        return load_config(stage.file, dict(overrides))
    except InputError as exc:
        raise _in_stage(pipeline, stage, exc) from None


def run_sweep_stage(pipeline: PipelineSpec, stage: StageSpec,
                    records: Mapping[str, StageRecord]) -> StageRecord:
    """Runs (or restores and finishes) the stage's sweep and registers its best checkpoint."""
    from kp_platform.tune.driver.runner import run_sweep
    from kp_platform.tune.results.registry import register_best

    stage_dir = pipeline.stage_dir(stage.name)
    space_file = stage_dir / "space.yaml"
    spec = build_sweep(pipeline, stage, training_overrides(pipeline, stage, records), space_file)
    results = run_sweep(spec)
    best = register_best(spec, results)
    if best is None:
        raise StageFailed(f"stage {stage.name!r}: no trial of the sweep reported {spec.metric} "
                          f"(see {spec.experiment_dir})")
    checkpoint = Path(best["checkpoint"])
    folder = pipeline.folder
    return StageRecord(
        stage=stage.name, kind=stage.kind, plan={},
        checkpoint=relative(checkpoint, folder), artifact=best["artifact"],
        config=_checkpoint_config(checkpoint),
        score={spec.metric: best[spec.metric], "trial_id": best["trial_id"]},
        outputs={"experiment": relative(spec.experiment_dir, folder),
                 "space": relative(space_file, folder)},
    )


def run_train_stage(pipeline: PipelineSpec, stage: StageSpec,
                    records: Mapping[str, StageRecord]) -> StageRecord:
    """Trains the stage's run, resuming it from `last.ckpt` when an earlier attempt stopped."""
    from kp_platform.training import train

    config = build_train_config(pipeline, stage, training_overrides(pipeline, stage, records))
    run_dir = pipeline.stage_dir(stage.name) / run_name(pipeline, stage)
    resume = run_dir if (run_dir / "checkpoints" / "last.ckpt").is_file() else None
    result = train(config, resume=resume, run_dir=run_dir)
    if result.best_checkpoint is None:
        raise StageFailed(f"stage {stage.name!r}: the run saved no best checkpoint "
                          f"(see {run_dir})")
    folder = pipeline.folder
    return StageRecord(
        stage=stage.name, kind=stage.kind, plan={},
        checkpoint=relative(result.best_checkpoint, folder),
        # The artifact `train()` logs for the run (wandb names come from the run directory).
        artifact=f"{run_dir.name}-model",
        config=_checkpoint_config(result.best_checkpoint),
        score=dict(result.metrics["best"]),
        outputs={"run": relative(run_dir, folder)},
    )


def _checkpoint_config(path: Path) -> dict[str, Any]:
    """The config stored in the checkpoint: the truth about the weights it holds."""
    from kp_platform.training import checkpoint_config, read_checkpoint

    config, _ = checkpoint_config(read_checkpoint(path), str(path))
    return config


def _in_stage(pipeline: PipelineSpec, stage: StageSpec, exc: InputError) -> InputError:
    """The error re-addressed to the pipeline file and the stage."""
    message = str(exc)
    if exc.source and message.startswith(f"{exc.source}: "):
        message = message[len(exc.source) + 2:]
    what = f"{stage.kind} {stage.file}" if stage.file else f"{stage.kind} (config defaults)"
    return InputError(f"stage {stage.name!r} ({what}): {message}", str(pipeline.path))
