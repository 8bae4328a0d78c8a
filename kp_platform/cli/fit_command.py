"""`kp fit TRAIN.json [--test TEST.json] --budget 30m`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

FIT_HELP = (
    "From a labelled COCO keypoint data set and a time budget to the best detector the budget "
    "buys. kp fit reads the data (image sizes, channels, keypoints per image, left/right names "
    "that suggest flip pairs) and prints what it decides and why: the input size, the metric "
    "(the top-1 pixel error where every channel holds at most one keypoint per image, else "
    "val/map), a search space around the defaults, ASHA's rungs and the trial count, the last "
    "two from one short calibration run timed on the resources each trial gets. It writes the "
    "sweep it runs as OUT/space.yaml (a normal sweep file: `kp sweep run` repeats or continues "
    "it), runs it with a time limit so that everything ends within the budget, registers the "
    "best checkpoint, and with --test scores it there and draws its predictions. Ray is "
    "embedded unless --address or RAY_ADDRESS names a cluster; as the entrypoint of `ray job "
    "submit` it spreads the trials over the cluster's GPUs (--gpus-per-trial)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit", help="the best detector a time budget buys: inspect, calibrate, sweep, evaluate",
        description=FIT_HELP)
    parser.add_argument("train", metavar="TRAIN.json",
                        help="the labelled training set (COCO keypoints); 20%% of its images "
                        "are held out for validation")
    parser.add_argument("--test", metavar="TEST.json", default=None,
                        help="a held-out test set: the best checkpoint is scored and drawn on it")
    parser.add_argument("--budget", required=True, metavar="TIME",
                        help="wall-clock time for everything, e.g. 20m, 1h30m, 90s (at least "
                        "2m)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="the fit's folder (default: fits/<name of TRAIN.json's folder>)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N",
                        help="CPUs each trial holds (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="N",
                        help="GPUs each trial holds; a fraction packs trials on one GPU "
                        "(default 0)")
    parser.add_argument("--address", metavar="HOST:PORT", default=None,
                        help="a running Ray cluster to use (the same as RAY_ADDRESS)")
    parser.set_defaults(func=_fit)


def _fit(args: argparse.Namespace) -> int:
    from kp_platform.fit.budget import parse_duration
    from kp_platform.tune.driver.runner import choose_token_auth

    budget = parse_duration(args.budget)
    train = Path(args.train)
    folder = Path(args.out) if args.out else Path("fits") / (train.absolute().parent.name
                                                            or "fit")
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    choose_token_auth()  # before anything imports Ray
    from kp_platform.fit.run import FitRequest, run_fit

    return run_fit(FitRequest(train=train, test=Path(args.test) if args.test else None,
                              budget_s=budget, folder=folder,
                              cpus_per_trial=args.cpus_per_trial,
                              gpus_per_trial=args.gpus_per_trial))
