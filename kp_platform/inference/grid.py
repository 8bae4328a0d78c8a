"""A picture of what a detector does: a grid of labelled images with its predictions drawn.

Each panel shows one image of a COCO dataset with the labelled points (hollow circles) and the
detector's predictions (crosses), one colour per channel, and a legend naming the channels. A
top-1 channel (one keypoint per image) shows its best peak; other channels show every peak above
the checkpoint's score threshold, each cross as large and as opaque as its score: a detector's
confident peaks stand out from the weak ones it also returns (most peaks of a young detector
score 0.1-0.3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kp_platform.data.channels import parse_channels, resolve_channels
from kp_platform.data.coco import CocoKeypoints
from kp_platform.data.image_io import read_rgb
from kp_platform.errors import InputError
from kp_platform.inference.detector import Detector

MAX_IMAGES = 12
COLUMNS = 4


def render_prediction_grid(detector: Detector, coco_json: str | Path, path: str | Path,
                           max_images: int = MAX_IMAGES) -> Path:
    """Draws the first `max_images` images of `coco_json` (file order) with labels and
    predictions, and writes a PNG.

    Raises:
        InputError: the dataset's channels differ from the checkpoint's.
    """
    data = detector.config.data
    coco = CocoKeypoints.load(coco_json, pixel_origin=data.pixel_origin)
    channels = resolve_channels(parse_channels(data.channels, source="checkpoint data.channels"),
                                coco.categories, source=str(coco_json))
    if list(channels.names) != detector.channel_names:
        raise InputError(f"channels {list(channels.names)} differ from the checkpoint's "
                         f"{detector.channel_names}", str(coco_json))
    images = coco.images[:max_images]
    predictions = detector.predict([image.path for image in images])
    columns = min(COLUMNS, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(3.2 * columns + 2.2, 3.2 * rows), layout="constrained")
    colours = _channel_colours(len(channels.names))
    for index, (image, found) in enumerate(zip(images, predictions, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(read_rgb(image.path))
        labelled = coco.image_keypoints(image.id, channels, data.visible_only).points
        for c, name in enumerate(channels.names):
            points = labelled[c]
            axes.scatter(points[:, 0], points[:, 1], s=40, facecolors="none",
                         edgecolors=[colours[c]], linewidths=1.2)
            peaks = found[name]
            if len(peaks):
                # Predictions come in the labels' convention; the labels here are in pixel
                # centres (imshow's too).
                sizes, opacities = score_style(peaks[:, 2])
                axes.scatter(peaks[:, 0] - coco.offset, peaks[:, 1] - coco.offset, s=sizes,
                             marker="x", color=[colours[c]], alpha=opacities, linewidths=1.2)
        axes.set_title(image.file_name, fontsize=8)
        axes.set_axis_off()
    legend = [Line2D([], [], color=colours[c], marker="s", linestyle="", label=name)
              for c, name in enumerate(channels.names)]
    legend += [Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="",
                      label="labelled"),
               Line2D([], [], color="black", marker="x", linestyle="",
                      label="predicted\n(size, opacity: score)")]
    figure.legend(handles=legend, loc="outside right upper", fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def score_style(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marker areas (points²) and opacities for peaks of these scores: 15 and 0.25 at score 0,
    growing linearly to 100 and 1 at score 1 (scores outside [0, 1] are clipped)."""
    scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    return 15.0 + 85.0 * scores, 0.25 + 0.75 * scores


def _channel_colours(count: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]

