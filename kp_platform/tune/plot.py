"""A PNG of the metric against epoch, one line per trial, drawn with OpenCV (no matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# Distinct BGR colours (Tableau 10), cycled.
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
            (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def plot_curves(
    curves: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    path: str | Path,
    metric: str = "val/map",
    size: tuple[int, int] = (900, 560),
) -> Path:
    """Draws `metric` against epoch for each trial and writes a PNG.

    Args:
        curves: (label, [(epoch, value), ...]) per trial.
        path: The PNG to write.
        metric: The y axis' name.
        size: (width, height) in pixels.
    """
    width, height = size
    left, right, top, bottom = 70, 190, 40, 50  # the legend sits in the right margin
    image = np.full((height, width, 3), 255, np.uint8)
    points = [p for _, curve in curves for p in curve]
    max_epoch = max([e for e, _ in points] + [1])
    y_max = max([v for _, v in points] + [1e-6])
    y_max = float(np.ceil(y_max * 10) / 10)  # round up to a tenth: readable ticks

    def to_pixel(epoch: float, value: float) -> tuple[int, int]:
        x = left + (width - left - right) * epoch / max_epoch
        y = height - bottom - (height - top - bottom) * value / y_max
        return int(round(x)), int(round(y))

    # Axes, ticks and labels.
    cv2.line(image, to_pixel(0, 0), to_pixel(max_epoch, 0), (0, 0, 0), 1)
    cv2.line(image, to_pixel(0, 0), to_pixel(0, y_max), (0, 0, 0), 1)
    for epoch in _ticks(max_epoch):
        x, y = to_pixel(epoch, 0)
        cv2.line(image, (x, y), (x, y + 5), (0, 0, 0), 1)
        cv2.putText(image, str(epoch), (x - 5, y + 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for value in np.linspace(0, y_max, 6):
        x, y = to_pixel(0, value)
        cv2.line(image, (x - 5, y), (x, y), (0, 0, 0), 1)
        cv2.line(image, (x + 1, y), (to_pixel(max_epoch, value)[0], y), (225, 225, 225), 1)
        cv2.putText(image, f"{value:.2f}", (x - 45, y + 4), _FONT, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(image, "epoch", (width // 2 - 60, height - 12), _FONT, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(image, f"{metric} per trial", (left, 25), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)

    for i, (label, curve) in enumerate(curves):
        colour = _COLOURS[i % len(_COLOURS)]
        pixels = [to_pixel(e, v) for e, v in sorted(curve)]
        for a, b in zip(pixels, pixels[1:], strict=False):
            cv2.line(image, a, b, colour, 2, cv2.LINE_AA)
        for p in pixels:
            cv2.circle(image, p, 3, colour, -1, cv2.LINE_AA)
        y = top + 18 * i
        cv2.line(image, (width - right + 15, y), (width - right + 40, y), colour, 2)
        cv2.putText(image, label, (width - right + 47, y + 4), _FONT, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path


def _ticks(max_epoch: int) -> list[int]:
    step = max(1, int(np.ceil(max_epoch / 10)))
    return list(range(0, max_epoch + 1, step))
