"""The sweep report's PNGs, drawn with matplotlib: the metric against epoch for every trial,
coloured by how the trial ended, with ASHA's cut-offs; and the parameter importances as bars.

Figures are built with `matplotlib.figure.Figure` (the Agg canvas), not pyplot: no global
state, no display needed, safe inside a Ray driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

# Per final state (Tableau palette); anything else is grey.
STATE_COLOURS = {
    "completed": "tab:green",
    "stopped (ASHA)": "tab:orange",
    "stopped (time budget)": "tab:purple",
    "errored": "tab:red",
    "running": "tab:blue",
}
OTHER_COLOUR = "tab:gray"


def plot_curves(
    curves: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    states: Sequence[str],
    path: str | Path,
    metric: str = "val/map",
    cutoffs: Mapping[int, float] | None = None,
    highlight: str | None = None,
) -> Path:
    """Draws `metric` against epoch, one line per trial, and writes a PNG.

    Args:
        curves: (trial id, [(epoch, value), ...]) per trial.
        states: Each trial's final state (`completed`, `stopped (ASHA)`, ...): it gives the
            line's colour.
        path: The PNG to write.
        metric: The y axis' name.
        cutoffs: ASHA's cut-off per rung epoch, drawn as a black bar at the rung.
        highlight: A trial drawn thicker and named in the legend (the base config's).
    """
    figure = Figure(figsize=(9, 5.6), layout="constrained")
    axes = figure.add_subplot()
    for (label, curve), state in zip(curves, states, strict=True):
        points = sorted(curve)
        axes.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3,
                  linewidth=3 if label == highlight else 1.5,
                  color=STATE_COLOURS.get(state, OTHER_COLOUR))
    legend = [Line2D([], [], color=STATE_COLOURS.get(state, OTHER_COLOUR), label=state)
              for state in dict.fromkeys(states)]
    if highlight is not None and highlight in {label for label, _ in curves}:
        legend.append(Line2D([], [], color="black", linewidth=3, label=f"{highlight} (base)"))
    if cutoffs:
        rungs = sorted(cutoffs.items())
        axes.scatter([e for e, _ in rungs], [v for _, v in rungs], marker="_", s=500,
                     linewidths=2, color="black", zorder=3)
        legend.append(Line2D([], [], color="black", marker="_", markersize=15, linestyle="",
                             label="ASHA cut-off"))
    axes.set(xlabel="epoch", ylabel=metric, title=f"{metric} per trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(handles=legend, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _write(figure, path)


def plot_importances(values: Mapping[str, float], path: str | Path, title: str) -> Path:
    """Horizontal bars, one per parameter, highest on top; `title` says what they measure."""
    ranked = sorted(values.items(), key=lambda kv: kv[1])
    figure = Figure(figsize=(9, 1.2 + 0.45 * max(1, len(ranked))), layout="constrained")
    axes = figure.add_subplot()
    bars = axes.barh([name for name, _ in ranked], [value for _, value in ranked],
                     color="tab:blue")
    axes.bar_label(bars, fmt="%.3f", padding=4)
    axes.set_title(title)
    axes.margins(x=0.15)
    return _write(figure, path)


def _write(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
