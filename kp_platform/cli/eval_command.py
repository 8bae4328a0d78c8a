"""`kp eval`: metrics of a prediction file against COCO ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kp_platform.cli.device_flags import add_device_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate: AP at L2 pixel-distance thresholds, PCK, top-1 pixel error",
        description="Evaluate keypoint detections against a COCO keypoint dataset: per channel "
        "AP at each L2 distance threshold in original-image pixels, their means, PCK and "
        "matched-distance statistics; for channels with at most one keypoint per image, the "
        "top-1 pixel error (mean, median), PCK and swap rate of each channel's point: its "
        "best peak, or with a checkpoint trained on such channels the peak its pose prior "
        "chooses (eval.pose_prior). "
        "Either a checkpoint on a dataset (--checkpoint, --data: "
        "the same code as validation during training) or a prediction file from any model "
        '(--gt, --pred, --channels; format [{"image_id": 1, "detections": '
        '{"CHANNEL": [[x, y, score], ...]}}, ...]).',
    )
    parser.add_argument("--checkpoint", metavar="CKPT", help="a trained checkpoint")
    parser.add_argument("--data", metavar="COCO_JSON", help="dataset for --checkpoint")
    parser.add_argument("--gt", metavar="COCO_JSON", help="ground truth for --pred")
    parser.add_argument("--pred", metavar="PRED_JSON", help="a prediction file")
    parser.add_argument(
        "--channels", metavar="CH", default=None,
        help="channel configuration (YAML file or 'a=b:c'); default: one per keypoint type",
    )
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=None, metavar="T",
        help="distance thresholds in pixels (default: 2 4 8, or the checkpoint's)",
    )
    parser.add_argument(
        "--matching", choices=("first", "nearest"), default=None,
        help="first: a detection takes the first unmatched ground truth within the threshold "
        "(the rule of the AP this project reproduces, from the heatmap-keypoint framework it "
        "started from; default unless the checkpoint says otherwise); nearest: the "
        "nearest one",
    )
    parser.add_argument("--visible-only", action="store_true", help="drop occluded (v=1) GT")
    parser.add_argument(
        "--pixel-origin", choices=("center", "corner"), default=None,
        help="with --gt/--pred: the pixel convention of both files (center: pixel centres at "
        "integer coordinates, the default; corner: at +0.5); only the image-border check "
        "depends on it",
    )
    parser.add_argument(
        "--no-pose-prior", action="store_true",
        help="with --checkpoint: score each top-1 channel's best peak, not the peak the "
        "checkpoint's pose prior chooses (to see what the prior changes)")
    parser.add_argument("--out", metavar="METRICS_JSON", default=None, help="write the metrics")
    parser.add_argument(
        "--render", metavar="PNG", default=None,
        help="with --checkpoint: also draw a grid of the first 12 images of --data with the "
        "labelled points (circles) and the predictions (crosses), a colour per channel")
    add_device_flags(parser, "with --checkpoint: processes, one device each (DDP; N processes "
                     "give the one-process metrics)")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from kp_platform.config.schema import EvalConfig
    from kp_platform.errors import InputError
    from kp_platform.metrics import evaluate_predictions, format_metrics

    bad = [t for t in args.thresholds or [] if not t > 0]
    if bad:
        raise InputError(f"thresholds must be positive, got {bad}", "--thresholds")
    if args.checkpoint or args.data:
        if not (args.checkpoint and args.data) or args.gt or args.pred or args.channels:
            raise InputError("use --checkpoint with --data, or --gt with --pred", "kp eval")
        if args.visible_only or args.pixel_origin is not None:
            raise InputError("--visible-only and --pixel-origin go with --gt/--pred (a "
                             "checkpoint brings its own)", "kp eval")
        from kp_platform.inference import evaluate_checkpoint

        overrides = {"thresholds": args.thresholds, "matching": args.matching,
                     "pose_prior": False if args.no_pose_prior else None}
        metrics = evaluate_checkpoint(
            args.checkpoint, args.data,
            overrides={k: v for k, v in overrides.items() if v is not None},
            accelerator=args.accelerator, devices=args.devices, precision=args.precision,
        )
    else:
        if not (args.gt and args.pred):
            raise InputError("use --checkpoint with --data, or --gt with --pred", "kp eval")
        if args.render or args.no_pose_prior:
            raise InputError("--render and --no-pose-prior go with --checkpoint and --data",
                             "kp eval")
        defaults = EvalConfig()
        metrics = evaluate_predictions(
            args.gt, args.pred, args.channels, args.thresholds or defaults.thresholds,
            args.matching or defaults.matching, args.visible_only, args.pixel_origin or "center",
        )
    print(format_metrics(metrics))
    if args.render:
        from kp_platform.inference import Detector, render_prediction_grid

        detector = Detector.from_checkpoint(args.checkpoint, device=args.accelerator)
        print(f"wrote {render_prediction_grid(detector, args.data, args.render)}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
