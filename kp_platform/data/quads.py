"""A seeded dataset of filled quadrilaterals on noise: the seed framework's kind of test data.

Each image is uniform RGB noise with 1-3 non-overlapping filled quadrilaterals (a rotated,
jittered rectangle in a random colour). Category ``quad`` has four keypoints, its corners,
clockwise from the top-left before rotation: ``kp0``, ``kp1`` (the top edge) and ``kp2``,
``kp3`` (the bottom edge). Rotations stay within ±30°, so the channel configuration
``kp0=kp1:kp2=kp3`` (top corners, bottom corners) is learnable from the image alone.

It is the data that ``benchmarks/bench_time_to_accuracy.py`` and the learning tests train on:
small, fast to render, and with sub-pixel corner labels that an anti-aliased fill makes visible
in the pixels. Every keypoint lies inside the image (v=2). Pixel-centre convention, as
everywhere: pixel (row i, col j) has its centre at (x=j, y=i), which OpenCV's drawing shares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from kp_platform.errors import InputError

CATEGORY: dict[str, Any] = {
    "id": 1,
    "name": "quad",
    "supercategory": "shape",
    "keypoints": ["kp0", "kp1", "kp2", "kp3"],
    "skeleton": [[1, 2], [2, 3], [3, 4], [4, 1]],
}
CHANNELS = "kp0=kp1:kp2=kp3"
"""The channel string the benchmark and tests use: top corners, bottom corners."""

_MAX_ROTATION = np.deg2rad(30.0)
_SUBPIXEL_BITS = 8  # cv2.fillPoly's fixed-point shift: 1/256 px vertex precision
_DECIMALS = 3


def generate_quads(
    out_dir: str | Path,
    num_images: int,
    image_size: int = 256,
    seed: int = 0,
    max_quads: int = 3,
    noise: bool = True,
) -> Path:
    """Writes ``out_dir/annotations.json`` and ``out_dir/images/*.png``.

    Args:
        out_dir: Folder to write into (created if needed).
        num_images: How many images, at least 1.
        image_size: Side of the square images in pixels, at least 32.
        seed: Non-negative; image ``i`` is drawn from ``np.random.default_rng([seed, i])``, so
            the same arguments give the same bytes.
        max_quads: Each image holds 1..max_quads quadrilaterals (fewer if they don't fit).
        noise: Uniform RGB noise behind the quads; False: flat mid-grey, on which a label
            that the quads do not explain cannot be memorised from the background's texture.

    Returns:
        The path of the written ``annotations.json``.

    Raises:
        InputError: Bad arguments.
    """
    for name, value, minimum in (
        ("num_images", num_images, 1), ("image_size", image_size, 32), ("seed", seed, 0),
        ("max_quads", max_quads, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(num_images):
        rng = np.random.default_rng([int(seed), index])
        pixels, quads = _render(rng, int(image_size), int(max_quads), noise)
        file_name = f"images/{index:06d}.png"
        Image.fromarray(pixels).save(out / file_name)
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": image_size,
                       "height": image_size})
        for corners in quads:
            keypoints = [v for x, y in corners for v in (round(float(x), _DECIMALS),
                                                          round(float(y), _DECIMALS), 2)]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORY["id"],
                "keypoints": keypoints, "num_keypoints": 4, "iscrowd": 0,
                "bbox": _bbox(corners), "area": float(cv2.contourArea(corners.astype(np.float32))),
            })
    dataset = {
        "info": {"description": f"Quadrilaterals on noise, {num_images} images of "
                 f"{image_size}x{image_size}", "seed": int(seed),
                 "generator": "kp_platform.data.quads"},
        "images": images,
        "annotations": annotations,
        "categories": [CATEGORY],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(dataset))
    return path


def _render(
    rng: np.random.Generator, size: int, max_quads: int, noise: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(size, size, 3) uint8 background with quads drawn on it, and each quad's corners."""
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    if not noise:
        pixels[:] = 128
    wanted = int(rng.integers(1, max_quads + 1))
    quads: list[np.ndarray] = []
    discs: list[tuple[np.ndarray, float]] = []  # bounding circles keep quads apart
    for _ in range(wanted * 20):
        if len(quads) == wanted:
            break
        corners, centre, radius = _quad(rng, size)
        if any(np.linalg.norm(centre - c) < radius + r + 2 for c, r in discs):
            continue
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        scale = 1 << _SUBPIXEL_BITS
        fixed = np.round(corners * scale).astype(np.int32)
        cv2.fillPoly(pixels, [fixed], colour, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        quads.append(corners)
        discs.append((centre, radius))
    return pixels, quads


def _quad(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Corners (4, 2) of a jittered, rotated rectangle inside the image; its centre and radius."""
    half_w, half_h = rng.uniform(0.06, 0.16, 2) * size
    base = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    base += rng.uniform(-0.2, 0.2, (4, 2)) * np.array([half_w, half_h])
    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = base @ rotation.T
    radius = float(np.linalg.norm(corners, axis=1).max())
    margin = radius + 2
    centre = rng.uniform(margin, size - 1 - margin, 2) if size - 1 > 2 * margin else (
        np.full(2, (size - 1) / 2))
    return corners + centre, centre, radius


def _bbox(corners: np.ndarray) -> list[float]:
    low, high = corners.min(axis=0), corners.max(axis=0)
    return [round(float(v), _DECIMALS) for v in (*low, *(high - low))]
