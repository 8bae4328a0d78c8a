"""`kp data synth`, `kp data check` and `kp data import` (a labelling tool's project -> COCO)."""

from __future__ import annotations

import argparse
import json

from kp_platform.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="generate, import and validate COCO keypoint datasets",
        description="Generate synthetic COCO keypoint datasets, import labelling tools' "
        "projects and validate datasets.",
    )
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND")
    commands.required = True

    synth = commands.add_parser(
        "synth", help="write a synthetic COCO keypoint dataset",
        description="Render cloth-like scenes (towels, shirts) with keypoints into "
        "OUT_DIR/annotations.json and OUT_DIR/images/. The same arguments give the same bytes.",
    )
    synth.add_argument("out_dir", metavar="OUT_DIR",
                       help="the folder to write (annotations.json and images/)")
    synth.add_argument(
        "--domain", choices=("synthetic", "real"), default="synthetic",
        help="synthetic: clean flat shading (PNG); real: photo backgrounds, texture, lighting, "
        "blur, noise and JPEG, a deliberate domain shift (default: synthetic)",
    )
    synth.add_argument("--num-images", type=int, default=100, help="default: 100")
    synth.add_argument("--image-size", type=int, default=128, help="side in pixels (default: 128)")
    synth.add_argument("--seed", type=int, default=0, help="default: 0")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(func=run_synth)

    check = commands.add_parser(
        "check", help="validate a dataset and print a summary",
        description="Validate a COCO keypoint JSON (structure, values, image files) and print "
        "images, instances and keypoints per channel, with the keypoints dropped and why.",
    )
    check.add_argument("coco_json", metavar="COCO_JSON",
                       help="a COCO keypoint file (images are read relative to it)")
    check.add_argument(
        "--channels", metavar="CH", default=None,
        help="channel configuration: a YAML file or the compact form 'a=b:c' "
        "(default: one channel per keypoint type)",
    )
    check.add_argument("--visible-only", action="store_true", help="drop occluded (v=1) keypoints")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.add_argument(
        "--pixel-origin", choices=("center", "corner"), default="center",
        help="the labels' pixel convention, as data.pixel_origin (default: center)",
    )
    check.set_defaults(func=run_check)

    imp = commands.add_parser(
        "import", help="turn a DeepLabCut, SLEAP, Label Studio or YOLO pose project into COCO",
        description="Read a labelling tool's project with sleap-io (YOLO with a reader of our "
        "own) and write OUT/annotations.json + OUT/images/: sub-pixel labels moved to this "
        "project's pixel-centre convention, images copied (embedded SLEAP frames as PNG). "
        "Images must lie in the project's folder; OUT must be new or empty.",
    )
    imp.add_argument(
        "src", metavar="SRC",
        help="a .slp file; a DeepLabCut/Lightning Pose CollectedData*.csv or a folder holding "
        "them (or labeled-data/*/ holding them); a Label Studio JSON export; a YOLO data.yaml "
        "or its folder",
    )
    imp.add_argument("out", metavar="OUT", help="output folder, new or empty (never overwritten)")
    imp.add_argument(
        "--format", choices=("auto", "dlc", "sleap", "labelstudio", "yolo"), default="auto",
        help="the source's format (default: auto, from SRC's suffix or the folder's files)",
    )
    imp.set_defaults(func=run_import)


def run_synth(args: argparse.Namespace) -> int:
    from kp_platform.data.synth import generate_dataset

    try:
        path = generate_dataset(
            args.out_dir, args.domain, args.num_images, args.image_size, args.seed,
            workers=args.workers, progress=True,
        )
    except ValueError as exc:
        raise InputError(str(exc), args.out_dir) from None
    info = json.loads(path.read_text())["info"]["keypoints"]
    print(f"wrote {path}: {info['visible'] + info['occluded']} keypoints labelled "
          f"({info['occluded']} occluded), {info['outside_image']} outside the image "
          "(written as 0, 0, 0)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from kp_platform.data import (
        CocoKeypoints,
        format_summary,
        parse_channels,
        resolve_channels,
        summarize_dataset,
    )

    coco = CocoKeypoints.load(args.coco_json, pixel_origin=args.pixel_origin)
    specs = parse_channels(args.channels, source=args.channels or "channels")
    channels = resolve_channels(specs, coco.categories, source=args.coco_json)
    summary = summarize_dataset(coco, channels, args.visible_only)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from kp_platform.data.importers import import_dataset

    result = import_dataset(args.src, args.out, args.format)
    for note in result.notes:
        print(f"note: {note}")
    print(f"pixel convention: {result.convention}")
    print(f"wrote {result.path}: {result.images} images, {result.instances} instances, "
          f"{result.keypoints} labelled keypoints ({result.occluded} occluded)")
    print("categories: " + "; ".join(f"{name} [{', '.join(kps)}]"
                                     for name, kps in result.categories.items()))
    print(f"next: kp data check {result.path}")
    return 0
