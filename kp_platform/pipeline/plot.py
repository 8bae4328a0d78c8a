"""A grouped bar plot of the evaluation stage's results, drawn with OpenCV (no matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Distinct BGR colours (Tableau 10), cycled.
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
            (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREY = (90, 90, 90)


def plot_results(results: dict[str, Any], path: str | Path,
                 size: tuple[int, int] = (900, 520)) -> Path:
    """Bars of AP per threshold and mAP, one bar per model in each group; writes a PNG.

    Args:
        results: What `build_results` returns.
        path: The PNG to write.
        size: (width, height) in pixels.
    """
    groups = [f"AP@{t}" for t in results["thresholds"]] + ["mAP"]
    series = [(label, [row["mean_ap"][t] for t in results["thresholds"]] + [row["map"]])
              for label, row in results["models"].items()]
    width, height = size
    left, right, top, bottom = 60, 20, 50, 80  # the legend sits under the axis
    image = np.full((height, width, 3), 255, np.uint8)
    y_max = max([v for _, values in series for v in values] + [1e-6])
    y_max = float(min(1.0, np.ceil(y_max * 10 + 1e-9) / 10))  # a readable top tick
    digits = 3 if y_max <= 0.1 else 2  # small scores stay distinguishable

    def y_pixel(value: float) -> int:
        return int(round(height - bottom - (height - top - bottom) * value / y_max))

    for i in range(11):  # grid lines and tick labels every tenth of the axis
        value = y_max * i / 10
        y = y_pixel(value)
        cv2.line(image, (left, y), (width - right, y), (225, 225, 225), 1)
        cv2.putText(image, f"{value:.2f}", (8, y + 4), _FONT, 0.4, _GREY, 1, cv2.LINE_AA)
    group_width = (width - left - right) / len(groups)
    bar = group_width * 0.8 / max(1, len(series))
    for g, group in enumerate(groups):
        x0 = left + g * group_width + group_width * 0.1
        for s, (_, values) in enumerate(series):
            x = int(round(x0 + s * bar))
            y = y_pixel(values[g])
            cv2.rectangle(image, (x, y), (int(round(x + bar)) - 2, y_pixel(0.0)),
                          _COLOURS[s % len(_COLOURS)], -1)
            cv2.putText(image, f"{values[g]:.{digits}f}", (x, max(top - 5, y - 5)), _FONT, 0.38,
                        (40, 40, 40), 1, cv2.LINE_AA)
        (text_w, _), _ = cv2.getTextSize(group, _FONT, 0.5, 1)
        centre = int(round(left + (g + 0.5) * group_width))
        cv2.putText(image, group, (centre - text_w // 2, height - bottom + 20), _FONT, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(image, (left, y_pixel(0.0)), (width - right, y_pixel(0.0)), (0, 0, 0), 1)
    x = left
    for s, (label, _) in enumerate(series):
        cv2.rectangle(image, (x, height - 32), (x + 14, height - 18), _COLOURS[s % 10], -1)
        cv2.putText(image, label, (x + 20, height - 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        (text_w, _), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
        x += text_w + 50
    title = f"{results['pipeline']}: AP on {Path(results['test_set']).parent.name} " \
            f"({results['num_images']} images)"
    cv2.putText(image, title, (left, 30), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path
