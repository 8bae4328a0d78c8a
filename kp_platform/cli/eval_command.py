"""`kp eval`: metrics of a prediction file against COCO ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kp_platform.cli.device_flags import add_device_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate: AP at L2 pixel-distance thresholds, PCK, top-1 pixel error",
        description="Evaluate keypoint detections against a COCO keypoint dataset: per channel "
        "AP at each L2 distance threshold in original-image pixels, their means, PCK and "
        "matched-distance statistics; for channels with at most one keypoint per image, the "
        "top-1 pixel error (mean, median), PCK and swap rate of each channel's best peak. "
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
    from kp_platform.metrics import evaluate_predictions

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

        overrides = {"thresholds": args.thresholds, "matching": args.matching}
        metrics = evaluate_checkpoint(
            args.checkpoint, args.data,
            overrides={k: v for k, v in overrides.items() if v is not None},
            accelerator=args.accelerator, devices=args.devices, precision=args.precision,
        )
    else:
        if not (args.gt and args.pred):
            raise InputError("use --checkpoint with --data, or --gt with --pred", "kp eval")
        if args.render:
            raise InputError("--render goes with --checkpoint and --data", "kp eval")
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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                  enumerate(zip(row, widths, strict=True)))
        for row in [header, *rows]
    ]


def format_top1(top1: dict[str, Any]) -> str:
    """Per top-1 channel and overall: labelled points, mean and median error in pixels, PCK at
    each threshold, swap rate and peaks missing."""
    keys = list(top1["overall"]["pck"])

    def cells(num: int, mean: Any, median: Any, pck: dict[str, Any], swap: Any,
              missing: Any) -> list[str]:
        def show(value: Any, digits: int) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        return [str(num), show(mean, 2), show(median, 2), *(show(pck[k], 3) for k in keys),
                show(swap, 3), str(missing)]

    header = ["top-1 channel", "labelled", "mean px", "median px",
              *(f"PCK@{k}" for k in keys), "swap rate", "missing"]
    rows = []
    for name in top1["channels"]:
        error = top1["error_px"][name]
        rows.append([name, *cells(error["num"], error["mean"], error["median"],
                                  top1["pck"][name], top1["swap_rate"][name],
                                  top1["missing"][name])])
    overall = top1["overall"]
    rows.append(["all", *cells(overall["num"], overall["mean"], overall["median"],
                               overall["pck"], overall["swap_rate"],
                               sum(top1["missing"].values()))])
    lines = _table(header, rows)
    lines.append("top-1: each channel's best-scoring peak against its labelled point, in "
                 "original-image pixels (no peak: the image diagonal); swap: nearer another "
                 "channel's point")
    return "\n".join(lines)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A per-channel table: ground-truth count, AP at each threshold, PCK at the largest; then
    the top-1 table where there are single-instance channels."""
    keys = list(metrics["mean_ap"])
    last = keys[-1]
    header = ["channel", "num_gt", *(f"AP@{t}" for t in keys), f"PCK@{last}", "dist p50"]
    rows = []
    for name, per_threshold in metrics["ap"].items():
        p50 = metrics["distance_px"][name]["p50"]
        rows.append([
            name, str(metrics["num_gt"][name]), *(f"{per_threshold[t]:.4f}" for t in keys),
            f"{metrics['pck'][name][last]:.4f}", "-" if p50 is None else f"{p50:.2f}",
        ])
    rows.append(["mean", "", *(f"{metrics['mean_ap'][t]:.4f}" for t in keys), "", ""])
    lines = _table(header, rows)
    lines.append(f"mAP (mean over channels and thresholds): {metrics['map']:.4f}"
                 f"   images: {metrics['num_images']}")
    if metrics.get("top1"):
        lines += ["", format_top1(metrics["top1"])]
    return "\n".join(lines)
