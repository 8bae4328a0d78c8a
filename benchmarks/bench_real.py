"""Real labelled images: the defaults' top-1 pixel error on a COCO train/test pair, per seed.

Run from the repository root on a folder holding `train.json` and `test.json` (COCO keypoints,
images under the folder), e.g. Lightning Pose's mirror-mouse example converted to COCO:

    .venv/bin/python benchmarks/bench_real.py --data ../shared/data/mirror-mouse --anchor 7.11

For each training seed it runs `kp train` with only the data paths set (`data.train`; the
validation images are split off the training set, `data.val_fraction`), then scores the
checkpoint training kept (`best.ckpt`, by `eval.keep`: on a small set the final weights;
`--checkpoint last`: the final weights, `last.ckpt`, whatever `eval.keep` says)
on `test.json` with `kp eval`'s code at 5 and 10 px (and again with `eval.pose_prior` off: the
same weights on each channel's best peak),
and prints per keypoint and overall: mean and median top-1 error (the distance from the labelled
point to the channel's best peak, in original pixels), PCK@5 and @10, the swap rate (the peak
nearer another keypoint's label than its own) and the wall time of training. `--anchor` is the
published figure to compare with (mean px; for mirror-mouse: Lightning Pose's 7.11 px with an
ImageNet-pretrained ResNet-50 on the full data set). `--set key=value` adds config overrides
(to compare a change against the defaults). The data never enter the repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kp_platform.config import apply_overrides, load_config
from kp_platform.console import quiet_library_info
from kp_platform.inference import evaluate_checkpoint
from kp_platform.training import train

THRESHOLDS = [5.0, 10.0]


def run_seed(data: Path, seed: int, overrides: list[str], root: Path,
             checkpoint: str = "best") -> dict[str, Any]:
    """Trains with the defaults (plus `overrides`) and scores best.ckpt (or, with `checkpoint`
    "last", last.ckpt) on test.json."""
    config = apply_overrides(load_config(), [
        f"data.train={data / 'train.json'}", f"trainer.seed={seed}",
        f"trainer.run_root={root}", f"trainer.name=seed{seed}", "logging.wandb.mode=disabled",
        "trainer.progress_bar=false", *overrides])
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    scored = result.last_checkpoint if checkpoint == "last" else (
        result.best_checkpoint or result.last_checkpoint)
    metrics = evaluate_checkpoint(scored, data / "test.json",
                                  overrides={"thresholds": THRESHOLDS})
    top1 = metrics.get("top1")
    if top1 is None:
        raise SystemExit("error: no channel holds at most one keypoint per image: the top-1 "
                         "error does not apply to this data set")
    # The same weights scored on each channel's best peak: what the pose prior changes.
    best_peaks = evaluate_checkpoint(scored, data / "test.json", overrides={
        "thresholds": THRESHOLDS, "pose_prior": False})["top1"]
    return {"seed": seed, "train_s": seconds, "epochs": result.metrics["epochs"],
            "best": result.metrics["best"], "top1": top1, "map": metrics["map"],
            "top1_best_peaks": best_peaks}


def table(runs: list[dict[str, Any]], anchor: float | None) -> str:
    """Per keypoint: mean, median, PCK@5, PCK@10 and swap rate, averaged over seeds, with the
    range of the mean; then the overall row per seed and the times."""
    names = runs[0]["top1"]["channels"]

    def cell(values: list[float | None], digits: int = 2) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "-"
        mean = statistics.fmean(known)
        spread = f" ({min(known):.{digits}f}-{max(known):.{digits}f})" if len(known) > 1 else ""
        return f"{mean:.{digits}f}{spread}"

    lines = ["| keypoint | mean px | median px | PCK@5 | PCK@10 | swap rate |",
             "|---|---|---|---|---|---|"]
    for name in [*names, "all"]:
        if name == "all":
            stats = [r["top1"]["overall"] for r in runs]
            pck = [s["pck"] for s in stats]
            swap = [s["swap_rate"] for s in stats]
        else:
            stats = [r["top1"]["error_px"][name] for r in runs]
            pck = [r["top1"]["pck"][name] for r in runs]
            swap = [r["top1"]["swap_rate"][name] for r in runs]
        lines.append(f"| {'**all**' if name == 'all' else name} | "
                     f"{cell([s['mean'] for s in stats])} | {cell([s['median'] for s in stats])} "
                     f"| {cell([p['5'] for p in pck], 3)} | {cell([p['10'] for p in pck], 3)} | "
                     f"{cell(swap, 3)} |")
    lines.append("")
    for run in runs:
        overall = run["top1"]["overall"]
        lines.append(f"seed {run['seed']}: mean {overall['mean']:.2f} px, median "
                     f"{overall['median']:.2f} px, PCK@5 {overall['pck']['5']:.3f}, swap rate "
                     f"{overall['swap_rate']:.3f}; trained {run['epochs']} epochs in "
                     f"{run['train_s']:.0f} s; best {run['best']}")
        plain = run["top1_best_peaks"]["overall"]
        lines.append(f"  the same weights, each channel's best peak (no pose prior): mean "
                     f"{plain['mean']:.2f} px, median {plain['median']:.2f} px, swap rate "
                     f"{plain['swap_rate']:.3f}")
    if anchor is not None:
        means = [r["top1"]["overall"]["mean"] for r in runs]
        lines.append(f"published figure: {anchor:.2f} px mean; here {min(means):.2f}-"
                     f"{max(means):.2f} px over {len(runs)} seeds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with train.json and test.json (COCO keypoints)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default 0 1 2)")
    parser.add_argument("--anchor", type=float, default=None,
                        help="the published mean top-1 error to compare with, in pixels")
    parser.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[],
                        metavar="KEY=VALUE", help="config overrides on top of the defaults "
                        "(--set may repeat)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="score best.ckpt (what training kept, eval.keep; the default) or "
                        "last.ckpt (the final weights)")
    parser.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args(argv)
    quiet_library_info()  # what `kp` shows: no Lightning banner or deprecation noise
    for name in ("train.json", "test.json"):
        if not (args.data / name).is_file():
            sys.stderr.write(f"error: {args.data / name}: not found (--data needs train.json "
                             "and test.json)\n")
            return 2
    runs = []
    with tempfile.TemporaryDirectory(prefix="kp-bench-real-") as tmp:
        for seed in args.seeds:
            runs.append(run_seed(args.data, seed, args.overrides, Path(tmp), args.checkpoint))
            overall = runs[-1]["top1"]["overall"]
            print(f"seed {seed}: mean top-1 error {overall['mean']:.2f} px "
                  f"({runs[-1]['train_s']:.0f} s)", flush=True)
    print(table(runs, args.anchor))
    if args.out:
        args.out.write_text(json.dumps({"overrides": args.overrides,
                                        "checkpoint": args.checkpoint, "runs": runs}, indent=2)
                            + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
