"""`kp fit` against the defaults' single run of the same wall time, on a COCO train/test pair.

Run from the repository root on a folder holding `train.json` and `test.json` (COCO keypoints,
images under the folder), e.g. Lightning Pose's mirror-mouse example converted to COCO:

    .venv/bin/python benchmarks/bench_fit.py --data ../shared/data/mirror-mouse

First the single run: `kp train` with only the data path set (seed 0; the defaults choose its
length, about 1000 optimiser steps), timed, its `best.ckpt` scored on `test.json`. Then
`kp fit train.json --test test.json --budget <that wall time>` (or `--budget`), as a user runs
it, in a subprocess. Prints both on the test set: wall time, mean and median top-1 pixel error
and PCK@5 where every channel holds one keypoint per image, else mAP; and the gain of `kp fit`.
The issue's goal: at least 20% lower mean top-1 error on mirror-mouse, never worse elsewhere.
The data never enter the repository.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kp_platform.config import apply_overrides, load_config
from kp_platform.console import quiet_library_info
from kp_platform.fit import format_duration, parse_duration
from kp_platform.inference import evaluate_checkpoint
from kp_platform.training import train

THRESHOLDS = [5.0, 10.0]


def single_run(data: Path, root: Path) -> dict[str, Any]:
    """`kp train` with only the data path set (seed 0), timed; best.ckpt scored on test.json."""
    config = apply_overrides(load_config(), [
        f"data.train={data / 'train.json'}", f"trainer.run_root={root}", "trainer.name=single",
        "logging.wandb.mode=disabled", "trainer.progress_bar=false"])
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    metrics = evaluate_checkpoint(result.best_checkpoint or result.last_checkpoint,
                                  data / "test.json", overrides={"thresholds": THRESHOLDS})
    return {"train_s": seconds, **scores(metrics)}


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of a checkpoint's test metrics."""
    top1 = metrics.get("top1")
    if not top1:
        return {"map": metrics["map"]}
    overall = top1["overall"]
    return {"mean_px": overall["mean"], "median_px": overall["median"],
            "pck5": overall["pck"].get("5"), "swap": overall["swap_rate"],
            "map": metrics["map"]}


def run_fit(data: Path, budget_s: float, folder: Path) -> dict[str, Any]:
    """`kp fit` as a user runs it; its best checkpoint scored like the single run's."""
    command = [sys.executable, "-m", "kp_platform.cli.main", "fit", str(data / "train.json"),
               "--test", str(data / "test.json"), "--budget", f"{budget_s:.0f}s",
               "--out", str(folder)]
    started = time.perf_counter()
    log = folder.parent / "fit.log"
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if code.returncode != 0:
        raise SystemExit(f"error: kp fit failed (exit {code.returncode}); see {log}")
    summary = json.loads((folder / "fit.json").read_text())
    metrics = evaluate_checkpoint(summary["best_checkpoint"], data / "test.json",
                                  overrides={"thresholds": THRESHOLDS})
    return {"wall_s": seconds, "summary": summary, **scores(metrics)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with train.json and test.json")
    parser.add_argument("--budget", default=None,
                        help="kp fit's budget (default: the single run's wall time)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    quiet_library_info()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-fit-"))
    single = single_run(args.data, root)
    budget = parse_duration(args.budget) if args.budget else single["train_s"]
    print(f"single run: {format_duration(single['train_s'])}; kp fit --budget "
          f"{format_duration(budget)} ...", flush=True)
    fitted = run_fit(args.data, budget, root / "fit")
    plan = fitted["summary"]["schedule"]
    rows = [("defaults, one run", single["train_s"], single),
            (f"kp fit ({plan['num_samples']} planned)", fitted["wall_s"], fitted)]
    keys = [k for k in ("mean_px", "median_px", "pck5", "swap", "map") if k in single]
    print(f"{'':<24}{'wall':>8}" + "".join(f"{k:>11}" for k in keys))
    for label, seconds, values in rows:
        print(f"{label:<24}{format_duration(seconds):>8}"
              + "".join(f"{values[k]:>11.3f}" for k in keys))
    if "mean_px" in single:
        gain = 1 - fitted["mean_px"] / single["mean_px"]
        print(f"kp fit's mean top-1 error is {abs(gain):.0%} "
              f"{'lower' if gain >= 0 else 'higher'} than the single run's (goal: at least 20% "
              "lower on mirror-mouse)")
    else:
        print(f"kp fit's mAP {fitted['map'] - single['map']:+.4f} against the single run")
    print(f"runs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
