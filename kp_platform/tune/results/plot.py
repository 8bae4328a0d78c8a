"""The sweep report's PNGs, drawn with OpenCV (no matplotlib): the metric against epoch for
every trial, coloured by how the trial ended, and the parameter importances as bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

# BGR colours per final state (Tableau palette); anything else is grey.
STATE_COLOURS = {
    "completed": (44, 160, 44),
    "stopped (ASHA)": (14, 127, 255),
    "errored": (40, 39, 214),
    "running": (180, 119, 31),
}
_OTHER = (127, 127, 127)
_BAR = (180, 119, 31)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)


def plot_curves(
    curves: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    states: Sequence[str],
    path: str | Path,
    metric: str = "val/map",
    cutoffs: Mapping[int, float] | None = None,
    highlight: str | None = None,
    size: tuple[int, int] = (900, 560),
) -> Path:
    """Draws `metric` against epoch, one line per trial, and writes a PNG.

    Args:
        curves: (trial id, [(epoch, value), ...]) per trial.
        path: The PNG to write.
        metric: The y axis' name.
        states: Each trial's final state (`completed`, `stopped (ASHA)`, ...): it gives the
            line's colour.
        cutoffs: ASHA's cut-off per rung epoch, drawn as a black bar at the rung.
        highlight: A trial drawn thicker and named in the legend (the base config's).
        size: (width, height) in pixels.
    """
    width, height = size
    left, right, top, bottom = 70, 190, 40, 50  # the legend sits in the right margin
    image = np.full((height, width, 3), 255, np.uint8)
    points = [p for _, curve in curves for p in curve] + [(e, v) for e, v in
                                                          (cutoffs or {}).items()]
    max_epoch = max([e for e, _ in points] + [1])
    y_max = max([v for _, v in points] + [1e-6])
    y_max = float(np.ceil(y_max * 10) / 10)  # round up to a tenth: readable ticks

    def to_pixel(epoch: float, value: float) -> tuple[int, int]:
        x = left + (width - left - right) * epoch / max_epoch
        y = height - bottom - (height - top - bottom) * value / y_max
        return int(round(x)), int(round(y))

    _axes(image, to_pixel, max_epoch, y_max, f"{metric} per trial")
    for (label, curve), state in zip(curves, states, strict=True):
        colour = STATE_COLOURS.get(state, _OTHER)
        thickness = 4 if label == highlight else 2
        pixels = [to_pixel(e, v) for e, v in sorted(curve)]
        for a, b in zip(pixels, pixels[1:], strict=False):
            cv2.line(image, a, b, colour, thickness, cv2.LINE_AA)
        for p in pixels:
            cv2.circle(image, p, thickness + 1, colour, -1, cv2.LINE_AA)
    legend = [(state, STATE_COLOURS.get(state, _OTHER), 2) for state in dict.fromkeys(states)]
    if highlight is not None and highlight in {label for label, _ in curves}:
        legend.append((f"{highlight} (base)", _BLACK, 4))
    for epoch, value in sorted((cutoffs or {}).items()):
        x, y = to_pixel(epoch, value)
        cv2.line(image, (x - 12, y), (x + 12, y), _BLACK, 2)
    if cutoffs:
        legend.append(("ASHA cut-off", _BLACK, 2))
    for i, (label, colour, thickness) in enumerate(legend):
        y = top + 18 * i
        cv2.line(image, (width - right + 15, y), (width - right + 40, y), colour, thickness)
        _text(image, label, (width - right + 47, y + 4), 0.42)
    return _write(image, path)


def plot_importances(values: Mapping[str, float], path: str | Path, title: str,
                     size: tuple[int, int] = (900, 0)) -> Path:
    """Horizontal bars, one per parameter, highest first; `title` says what they measure."""
    width = size[0]
    bar, gap, top, left, right = 26, 10, 50, 260, 80
    height = top + len(values) * (bar + gap) + 30
    image = np.full((height, width, 3), 255, np.uint8)
    _text(image, title, (20, 28), 0.55)
    longest = max(values.values(), default=1.0) or 1.0
    for i, (name, value) in enumerate(sorted(values.items(), key=lambda kv: -kv[1])):
        y = top + i * (bar + gap)
        length = int(round((width - left - right) * value / longest))
        cv2.rectangle(image, (left, y), (left + max(length, 1), y + bar), _BAR, -1)
        _text(image, name, (20, y + bar - 8), 0.5)
        _text(image, f"{value:.3f}", (left + length + 8, y + bar - 8), 0.5)
    return _write(image, path)


def _axes(image: np.ndarray, to_pixel, max_epoch: int, y_max: float, title: str) -> None:
    height = image.shape[0]
    cv2.line(image, to_pixel(0, 0), to_pixel(max_epoch, 0), _BLACK, 1)
    cv2.line(image, to_pixel(0, 0), to_pixel(0, y_max), _BLACK, 1)
    step = max(1, int(np.ceil(max_epoch / 10)))
    for epoch in range(0, max_epoch + 1, step):
        x, y = to_pixel(epoch, 0)
        cv2.line(image, (x, y), (x, y + 5), _BLACK, 1)
        _text(image, str(epoch), (x - 5, y + 20), 0.45)
    for value in np.linspace(0, y_max, 6):
        x, y = to_pixel(0, value)
        cv2.line(image, (x - 5, y), (x, y), _BLACK, 1)
        cv2.line(image, (x + 1, y), (to_pixel(max_epoch, value)[0], y), (225, 225, 225), 1)
        _text(image, f"{value:.2f}", (x - 45, y + 4), 0.45)
    _text(image, "epoch", (image.shape[1] // 2 - 60, height - 12), 0.5)
    _text(image, title, (70, 25), 0.6)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    cv2.putText(image, text, origin, _FONT, scale, _BLACK, 1, cv2.LINE_AA)


def _write(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path
