"""Runs a pipeline: validation of every stage, dataset generation, then the stages in order,
skipping those whose marker says they completed with the same plan."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kp_platform.errors import InputError
from kp_platform.files import read_json
from kp_platform.pipeline.records import (
    StageRecord,
    normalise_plan,
    read_record,
    write_record,
)
from kp_platform.pipeline.results import eval_settings, run_evaluate_stage
from kp_platform.pipeline.spec import PipelineSpec, StageSpec
from kp_platform.pipeline.stages import (
    build_sweep,
    build_train_config,
    run_sweep_stage,
    run_train_stage,
    training_overrides,
)

DATASET_MARKER = "dataset.json"
PLAN_FILE = "plan.json"
"""Written when a stage starts: tells an interrupted stage of this plan (resume) from one of
another (start afresh)."""
# Below this many images a worker pool costs more than it saves (and forking a process that
# already runs Ray's threads is best avoided).
_POOL_MIN_IMAGES = 100

Echo = Callable[[str], None]


def validate(pipeline: PipelineSpec) -> None:
    """Builds every stage's sweep spec or config, with placeholder checkpoints, and checks
    that its data files exist or will be generated.

    Raises:
        InputError: naming the pipeline file and the stage.
    """
    with tempfile.TemporaryDirectory(prefix="kp-pipeline-") as scratch:
        for stage in pipeline.stages:
            if stage.kind == "evaluate":
                eval_settings(pipeline, stage)
                _check_file(pipeline, stage, "evaluate.data",
                            pipeline.resolve(stage.evaluate.data))  # type: ignore[union-attr]
                continue
            overrides = training_overrides(pipeline, stage, None)
            if stage.kind == "sweep":
                config = build_sweep(pipeline, stage, overrides,
                                     Path(scratch) / f"{stage.name}.yaml").base
            else:
                config = build_train_config(pipeline, stage, overrides)
            for key in ("train", "val", "test"):
                value = getattr(config.data, key)
                if key == "train" or value:
                    _check_file(pipeline, stage, f"data.{key}", value)


def stage_plan(pipeline: PipelineSpec, stage: StageSpec,
               records: Mapping[str, StageRecord]) -> dict[str, Any]:
    """What a stage runs, independent of where the pipeline folder lies: compared with the
    marker's plan to decide whether a completed stage can be skipped."""
    plan: dict[str, Any] = {"kind": stage.kind, "file": stage.file}
    if stage.kind == "evaluate":
        plan["evaluate"] = dataclasses.asdict(stage.evaluate)  # type: ignore[arg-type]
    else:
        plan["overrides"] = {**pipeline.overrides, **stage.overrides,
                             **pipeline.cli_overrides, **stage.cli_overrides}
        plan.update(space=stage.space, init_from=stage.init_from,
                    inherit_from=stage.architecture_source,
                    inherit=list(stage.inherit) if stage.architecture_source else [])
    # A re-run upstream stage invalidates this one.
    plan["upstream"] = {ref: records[ref].finished for ref in stage.references}
    return normalise_plan(plan)


def run_pipeline(pipeline: PipelineSpec, echo: Echo = print) -> dict[str, StageRecord]:
    """Validates, generates the datasets, then runs or skips every stage in order.

    A stage completed with the same plan is skipped; one interrupted with the same plan is
    resumed. A stage whose plan changed (its definition, or an earlier stage it uses ran again)
    has its folder moved aside to `<stage>.replaced-N` and runs afresh, like everything after it
    that depends on it.

    Returns:
        The record of every stage, by name.

    Raises:
        InputError: a bad pipeline file or dataset folder.
        StageFailed: a stage produced no checkpoint.
    """
    validate(pipeline)
    prepare_datasets(pipeline, echo)
    records: dict[str, StageRecord] = {}
    for index, stage in enumerate(pipeline.stages, 1):
        head = f"[{index}/{len(pipeline.stages)}] stage {stage.name}"
        stage_dir = pipeline.stage_dir(stage.name)
        plan = stage_plan(pipeline, stage, records)
        done = read_record(stage_dir)
        if done is not None and done.plan == plan:
            echo(f"{head}: completed {done.finished}, skipped")
            records[stage.name] = done
            continue
        started = read_json(stage_dir / PLAN_FILE) if (stage_dir / PLAN_FILE).is_file() else None
        if done is not None or (started is not None and started != plan):
            echo(f"{head}: its definition or an earlier stage changed since it ran; moved its "
                 f"folder to {_set_aside(stage_dir)}")
        elif started is not None:
            echo(f"{head}: resuming the interrupted {stage.kind}")
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        echo(f"{head}: {stage.kind} {stage.file or ''}".rstrip())
        run = {"sweep": run_sweep_stage, "train": run_train_stage,
               "evaluate": run_evaluate_stage}[stage.kind]
        record = run(pipeline, stage, records)
        record.plan = plan
        marker = write_record(stage_dir, record)
        echo(f"stage {stage.name}: done ({marker})")
        records[stage.name] = record
    return records


def _set_aside(stage_dir: Path) -> Path:
    """Renames a stage folder out of the way (never deletes: a sweep may hold days of work)."""
    n = 1
    while (target := stage_dir.with_name(f"{stage_dir.name}.replaced-{n}")).exists():
        n += 1
    stage_dir.rename(target)
    return target


def prepare_datasets(pipeline: PipelineSpec, echo: Echo = print) -> None:
    """Generates each dataset of the file into `<pipeline>/data/<key>/` unless it is there.

    Raises:
        InputError: a dataset folder generated with other settings.
    """
    from kp_platform.data.synth import generate_dataset

    for dataset in pipeline.datasets.values():
        path = pipeline.dataset_path(dataset.key)
        marker = path.parent / DATASET_MARKER
        wanted = dataclasses.asdict(dataset)
        if marker.is_file():
            if read_json(marker) != wanted:
                raise InputError(f"datasets.{dataset.key}: {path.parent} was generated with "
                                 "other settings; delete it (and the stages trained on it) or "
                                 "use another root or name", str(pipeline.path))
            continue
        echo(f"dataset {dataset.key}: {dataset.num_images} {dataset.domain} images of "
             f"{dataset.image_size}px into {path.parent}")
        workers = 1 if dataset.num_images < _POOL_MIN_IMAGES else None
        generate_dataset(path.parent, dataset.domain, dataset.num_images, dataset.image_size,
                         dataset.seed, workers=workers)
        # Written last: an interrupted generation has no marker and runs again.
        marker.write_text(json.dumps(wanted) + "\n")


def _check_file(pipeline: PipelineSpec, stage: StageSpec, key: str, value: Any) -> None:
    generated = {str(pipeline.dataset_path(k)) for k in pipeline.datasets}
    if not value:
        raise InputError(f"stage {stage.name!r}: {key} is not set", str(pipeline.path))
    if str(Path(value).absolute()) not in generated and not Path(value).is_file():
        raise InputError(f"stage {stage.name!r}: {key}: file not found: {value}",
                         str(pipeline.path))
