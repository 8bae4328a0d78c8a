"""Plain-text tables of evaluation results: per channel AP, PCK and distances; the top-1 pixel
error table for single-instance channels. `kp eval` and `kp fit` print them."""

from __future__ import annotations

from typing import Any


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
    chosen = ("peak chosen by the pose prior" if top1.get("chosen_by") == "pose prior"
              else "best-scoring peak")
    lines.append(f"top-1: each channel's {chosen} against its labelled point, in "
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
