"""The evaluation stage's PNG: AP per threshold and mAP, one bar per model, drawn with matplotlib.

Built with `matplotlib.figure.Figure` (the Agg canvas), not pyplot: no global state, no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def plot_results(results: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars of AP per threshold and mAP, one bar per model in each group; writes a PNG.

    Args:
        results: What `build_results` returns.
        path: The PNG to write.
    """
    groups = [f"AP@{t}" for t in results["thresholds"]] + ["mAP"]
    series = [(label, [row["mean_ap"][t] for t in results["thresholds"]] + [row["map"]])
              for label, row in results["models"].items()]
    top = max([v for _, values in series for v in values] + [1e-6])
    figure = Figure(figsize=(9, 5.2), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for s, (label, values) in enumerate(series):
        bars = axes.bar(positions - 0.4 + width * (s + 0.5), values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set_xticks(positions, groups)
    axes.set_ylabel("AP (mean over channels)")
    axes.set_ylim(0, min(1.0, top * 1.15))
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left")
    axes.set_title(f"{results['pipeline']}: AP on {Path(results['test_set']).parent.name} "
                   f"({results['num_images']} images)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
