"""The evaluation stage: several stages' best checkpoints scored on one test set, as a table,
`results.json` and a bar plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kp_platform.config import Config, apply_overrides
from kp_platform.errors import InputError
from kp_platform.pipeline.records import StageRecord, relative
from kp_platform.pipeline.spec import EvaluateSpec, PipelineSpec, StageSpec


def eval_settings(pipeline: PipelineSpec, stage: StageSpec) -> dict[str, Any]:
    """The stage's `eval` settings, checked and typed by the config schema."""
    assert stage.evaluate is not None
    settings = stage.evaluate.eval
    try:
        config = apply_overrides(Config(), {f"eval.{k}": v for k, v in settings.items()})
    except InputError as exc:
        raise InputError(f"stage {stage.name!r}: evaluate.eval: {exc}",
                         str(pipeline.path)) from None
    return {key: getattr(config.eval, key) for key in settings}


def results_path(pipeline: PipelineSpec, stage: StageSpec) -> Path:
    """`<pipeline>/results.json`; `results-<stage>.json` when several stages evaluate."""
    evaluations = [s for s in pipeline.stages if s.kind == "evaluate"]
    name = "results" if len(evaluations) == 1 else f"results-{stage.name}"
    return pipeline.folder / f"{name}.json"


def run_evaluate_stage(pipeline: PipelineSpec, stage: StageSpec,
                       records: Mapping[str, StageRecord]) -> StageRecord:
    """Scores every listed stage's best checkpoint on the test set; writes JSON and PNG, and
    draws the `render` model's predictions."""
    from kp_platform.inference import Detector, evaluate_checkpoint, render_prediction_grid
    from kp_platform.pipeline.plot import plot_results

    spec: EvaluateSpec = stage.evaluate  # type: ignore[assignment]
    test = Path(pipeline.resolve(spec.data)).absolute()
    settings = eval_settings(pipeline, stage)
    folder = pipeline.folder
    models: dict[str, dict[str, Any]] = {}
    for label, source in spec.models.items():
        record = records[source]
        checkpoint = record.checkpoint_path(folder)
        print(f"evaluating {label!r} (stage {source}: {checkpoint}) on {test}")
        metrics = evaluate_checkpoint(checkpoint, test, overrides=settings or None)
        models[label] = {"stage": source, "checkpoint": record.checkpoint,
                         "artifact": record.artifact, **metrics}
    results = build_results(pipeline.name, test, models, spec.baseline)
    path = results_path(pipeline, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    plot = plot_results(results, path.with_suffix(".png"))
    outputs = {"results": relative(path, folder), "plot": relative(plot, folder)}
    if spec.render is not None:
        checkpoint = records[spec.models[spec.render]].checkpoint_path(folder)
        detector = Detector.from_checkpoint(checkpoint)
        grid = path.with_name(path.name.replace("results", "predictions", 1)).with_suffix(".png")
        outputs["predictions"] = relative(render_prediction_grid(detector, test, grid), folder)
    return StageRecord(
        stage=stage.name, kind=stage.kind, plan={},
        score={label: {"mean_ap": row["mean_ap"], "map": row["map"]}
               for label, row in models.items()},
        outputs=outputs,
    )


def build_results(pipeline: str, test: Path, models: dict[str, dict[str, Any]],
                  baseline: str | None) -> dict[str, Any]:
    """The `results.json` content: one row per model, and each model's gain over the baseline.

    Args:
        pipeline: The pipeline's name.
        test: The test set's COCO file.
        models: Row label → stage, checkpoint, artifact and the metrics dict of `kp eval`.
        baseline: The row the others are compared with, or None.
    """
    thresholds = sorted({t for row in models.values() for t in row["mean_ap"]}, key=float)
    results: dict[str, Any] = {
        "pipeline": pipeline,
        "test_set": str(test),
        "num_images": next(iter(models.values()))["num_images"],
        "thresholds": thresholds,
        "models": models,
        "baseline": baseline,
        "gain": {},
    }
    if baseline is not None:
        base = models[baseline]
        for label, row in models.items():
            if label != baseline:
                gain = {t: row["mean_ap"][t] - base["mean_ap"][t] for t in thresholds}
                results["gain"][label] = {**gain, "map": row["map"] - base["map"]}
    return results


def format_table(results: dict[str, Any]) -> str:
    """The table printed at the end of a pipeline: mean AP per threshold and mAP per model."""
    thresholds = results["thresholds"]
    labels = list(results["models"]) + [f"{k} - {results['baseline']}" for k in results["gain"]]
    width = max(len(label) for label in labels) + 2
    header = "".join(f"{'AP@' + t:>9}" for t in thresholds) + f"{'mAP':>9}"
    lines = [f"test set: {results['test_set']} ({results['num_images']} images); "
             "AP averaged over channels", f"{'model':<{width}}{header}"]
    for label, row in results["models"].items():
        cells = [row["mean_ap"][t] for t in thresholds] + [row["map"]]
        lines.append(f"{label:<{width}}" + "".join(f"{v:>9.3f}" for v in cells))
    for label, gain in results["gain"].items():
        cells = [gain[t] for t in thresholds] + [gain["map"]]
        name = f"{label} - {results['baseline']}"
        lines.append(f"{name:<{width}}" + "".join(f"{v:>+9.3f}" for v in cells))
    return "\n".join(lines)
