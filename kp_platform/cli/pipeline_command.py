"""`kp pipeline PIPELINE.yaml [key=value ...] [--dry-run]`."""

from __future__ import annotations

import argparse
import sys

PIPELINE_HELP = (
    "Run a multi-stage pipeline (search_spaces/pipelines/*.yaml): datasets are generated into "
    "ROOT/NAME/data/, then the stages run in order, each a sweep, a single training run or an "
    "evaluation; a stage can start from an earlier stage's best checkpoint "
    "(init_from: stage:NAME), which its wandb runs declare as their input artifact. The whole "
    "file is validated before anything runs. A completed stage leaves ROOT/NAME/STAGE/"
    "stage.json and is skipped when the pipeline runs again; an interrupted sweep is restored "
    "and an interrupted training run resumes from its last.ckpt; a stage whose definition "
    "changed, or that used a stage which ran again, is moved aside to STAGE.replaced-N and "
    "runs afresh. An evaluation stage prints a table and writes ROOT/NAME/results.json and "
    "results.png."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="run a multi-stage pipeline",
                                   description=PIPELINE_HELP)
    parser.add_argument("pipeline", metavar="PIPELINE.yaml",
                        help="a pipeline file (search_spaces/pipelines/synth2real.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="root=DIR or name=NAME; datasets.KEY.num_images=N; a config key for every "
        "training stage (trainer.accelerator=gpu); STAGE.KEY for one stage: a sweep setting "
        "(pretrain.num_samples=4), a config key (finetune.optim.lr=3e-4), or init_from, "
        "inherit_from")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the file and every stage's config, print the plan, stop")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kp_platform.tune.driver.runner import choose_token_auth

    choose_token_auth()  # before anything imports Ray: a sweep stage starts it
    from kp_platform.pipeline import StageFailed, load_pipeline, run_pipeline, validate
    from kp_platform.pipeline.results import format_table

    pipeline = load_pipeline(args.pipeline, args.overrides)
    if args.dry_run:
        validate(pipeline)
        print(f"pipeline {pipeline.name}: {pipeline.folder}")
        for index, stage in enumerate(pipeline.stages, 1):
            what = stage.file or "(config defaults)" if stage.kind != "evaluate" else ""
            if stage.init_from:
                what += f", starts from stage {stage.init_from}'s best checkpoint"
            elif stage.inherit_from:
                what += f", architecture of stage {stage.inherit_from}"
            if stage.evaluate is not None:
                what = ", ".join(f"{label} (stage {ref})"
                                 for label, ref in stage.evaluate.models.items())
            print(f"  [{index}] {stage.name}: {stage.kind} {what}")
        return 0
    try:
        records = run_pipeline(pipeline)
    except StageFailed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    import json

    for record in records.values():
        results = record.outputs.get("results")
        if results:
            print(format_table(json.loads((pipeline.folder / results).read_text())))
            print(f"results: {pipeline.folder / results}")
            print(f"plot: {pipeline.folder / record.outputs['plot']}")
            if "predictions" in record.outputs:
                print(f"predictions: {pipeline.folder / record.outputs['predictions']}")
    return 0
