"""`kp predict` and `kp export`: using a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kp_platform.cli.device_flags import add_device_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict", help="detect keypoints in images and videos and write a prediction file",
        description="Detect keypoints with a checkpoint. INPUT is an image file, a video file "
        "OpenCV reads (mp4, avi, ...), a folder (searched recursively for images and videos, "
        "sorted by path) or a COCO JSON (its images). The output is a JSON list of "
        '{"image_id", "detections": {CHANNEL: [[x, y, score], ...]}} in original-image pixels, '
        'with "file_name" for an image, "source" and "frame" for a video frame. Image ids: '
        "a single COCO file keeps its ids, a single video uses the frame index (from 0), "
        "anything else is numbered 1, 2, ... in reading order.",
    )
    predict.add_argument("--checkpoint", required=True, metavar="CKPT",
                         help="a checkpoint path or wandb:<entity>/<project>/<name>:<alias>")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="images, folders of images, or videos")
    predict.add_argument("--out", required=True, metavar="PRED.json",
                         help="where to write the detections (COCO-style results JSON)")
    predict.add_argument("--render", metavar="DIR",
                         help="write copies of the images and videos with the detections drawn")
    predict.add_argument("--min-score", type=float, default=None,
                         help="return (and draw) the peaks scoring above this; default: the "
                         "checkpoint's eval.score_threshold (0.1); its eval.score_floor (0.01) "
                         "gives the peaks that validation scores")
    predict.add_argument("--batch-size", type=int, default=8,
                         help="images per forward pass (default 8)")
    predict.add_argument("--workers", type=int, default=0,
                         help="loader processes that decode images and frames (default 0)")
    add_device_flags(predict)  # one device
    predict.set_defaults(func=run_predict)

    export = subparsers.add_parser(
        "export", help="export the network to ONNX or TorchScript",
        description="Export the network of a checkpoint. The file maps (B, 3, H, W) RGB in "
        "[0, 1] at the checkpoint's data.input_size to (B, C, H/s, W/s) heatmaps in [0, 1]. "
        "With --with-decoding it returns, per image and channel, the top-k keypoints instead: "
        "'keypoints' (B, C, K, 3) (x, y, score) in the pixels of an original image of "
        "--image-size, and 'valid' (B, C, K).",
    )
    export.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a checkpoint path or wandb:<entity>/<project>/<name>:<alias>")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"),
                        help="the exported format")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    export.add_argument("--with-decoding", action="store_true",
                        help="include peak decoding and the mapping to original-image pixels")
    export.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="original image size the decoded keypoints refer to (default: "
                        "data.input_size)")
    add_device_flags(export, precision=False)  # one device; exported files are float32
    export.set_defaults(func=run_export)


def run_predict(args: argparse.Namespace) -> int:
    from kp_platform.inference import Detector, resolve_device
    from kp_platform.inference.sources import collect_sources
    from kp_platform.inference.stream import predict_sources

    device = resolve_device(args.accelerator)
    sources, rule = collect_sources(args.inputs)
    detector = Detector.from_checkpoint(args.checkpoint, device, precision=args.precision)
    entries = []
    started = time.perf_counter()
    for entry in predict_sources(detector, sources, rule, batch_size=args.batch_size,
                                 workers=args.workers, min_score=args.min_score,
                                 render=args.render, progress=True):
        entry["detections"] = {name: points.tolist()
                               for name, points in entry["detections"].items()}
        entries.append(entry)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(entries) + "\n")
    rendered = f"; rendered into {args.render}" if args.render else ""
    print(f"wrote {len(entries)} predictions to {out}{rendered}")
    # Reading, the network and decoding, without the start-up and the checkpoint's loading.
    print(f"{len(entries)} frames in {seconds:.2f} s: {len(entries) / seconds:.1f} frames/s on "
          f"{device} at batch size {args.batch_size}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from kp_platform.errors import InputError
    from kp_platform.inference import export_model, load_module, resolve_device

    if args.image_size and not args.with_decoding:
        raise InputError("only the decoding maps keypoints to an image size; add "
                         "--with-decoding", "--image-size")
    device = resolve_device(args.accelerator)
    path = export_model(load_module(args.checkpoint, str(device)), args.format, args.out,
                        with_decoding=args.with_decoding, image_size=args.image_size)
    print(f"wrote {path}")
    return 0
