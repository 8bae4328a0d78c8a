"""`kp predict` and `kp export`: using a trained checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict", help="detect keypoints in images and write a prediction file",
        description="Detect keypoints with a checkpoint. INPUT is an image file, a folder of "
        "images or a COCO JSON (its images are used). The output follows the prediction format "
        '[{"image_id", "file_name", "detections": {CHANNEL: [[x, y, score], ...]}}] in '
        "original-image pixels; image ids come from the COCO file, else 1, 2, ... in input order.",
    )
    predict.add_argument("--checkpoint", required=True, metavar="CKPT")
    predict.add_argument("inputs", nargs="+", metavar="INPUT")
    predict.add_argument("--out", required=True, metavar="PRED.json")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.set_defaults(func=run_predict)

    export = subparsers.add_parser(
        "export", help="export the network to ONNX or TorchScript",
        description="Export the network of a checkpoint. The file maps (B, 3, H, W) RGB in "
        "[0, 1] at the checkpoint's data.input_size to (B, C, H/s, W/s) heatmaps in [0, 1].",
    )
    export.add_argument("--checkpoint", required=True, metavar="CKPT")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--out", required=True, metavar="FILE")
    export.set_defaults(func=run_export)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kp_platform.data.coco import CocoKeypoints
    from kp_platform.errors import InputError
    from kp_platform.inference import Detector

    items: list[tuple[int, Path]] = []
    for text in args.inputs:
        path = Path(text)
        if path.suffix.lower() == ".json":
            items += [(image.id, image.path) for image in CocoKeypoints.load(path).images]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            items += [(len(items) + i + 1, p) for i, p in enumerate(files)]
        elif path.is_file():
            items.append((len(items) + 1, path))
        else:
            raise InputError("no such image, folder or COCO file", text)
    if not items:
        raise InputError("no images found", " ".join(args.inputs))
    detector = Detector.from_checkpoint(args.checkpoint)
    entries = []
    for start in tqdm(range(0, len(items), args.batch_size), desc="predict", unit="batch"):
        chunk = items[start : start + args.batch_size]
        results = detector.predict([p for _, p in chunk], batch_size=args.batch_size)
        for (image_id, path), per_channel in zip(chunk, results, strict=True):
            entries.append({
                "image_id": image_id,
                "file_name": str(path),
                "detections": {name: points.tolist() for name, points in per_channel.items()},
            })
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(entries) + "\n")
    print(f"wrote {len(entries)} predictions to {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from kp_platform.inference import export_model, load_module

    path = export_model(load_module(args.checkpoint), args.format, args.out)
    print(f"wrote {path}")
    return 0
