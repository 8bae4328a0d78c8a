"""The report's PNGs: each trial's line in its final state's colour, cut-offs, importances."""

from __future__ import annotations

import cv2
import numpy as np

from kp_platform.tune.results.plot import plot_curves, plot_importances

GREEN, ORANGE = (44, 160, 44), (255, 127, 14)  # matplotlib's tab:green, tab:orange (RGB)


def _has(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(image.astype(int) - rgb) <= 2, axis=-1).sum())


def test_curves_are_coloured_by_how_each_trial_ended(tmp_path):
    path = plot_curves([("a", [(1, 0.2), (2, 0.5), (4, 0.7)]), ("b", [(1, 0.1), (2, 0.15)])],
                       ["completed", "stopped (ASHA)"], tmp_path / "sub" / "val_map.png",
                       cutoffs={2: 0.3}, highlight="a")
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert image.shape[:2] == (560, 900)
    assert _has(image, GREEN) > 200 and _has(image, ORANGE) > 50
    only_completed = plot_curves([("a", [(1, 0.2), (2, 0.5)])], ["completed"],
                                 tmp_path / "one.png")
    assert _has(cv2.cvtColor(cv2.imread(str(only_completed)), cv2.COLOR_BGR2RGB), ORANGE) == 0


def test_importances_are_bars_with_their_values(tmp_path):
    path = plot_importances({"optim.lr": 0.7, "model.width": 0.3}, tmp_path / "imp.png",
                            "parameter importance")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] == 900
    blue = _has(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (31, 119, 180))
    assert blue > 1000
