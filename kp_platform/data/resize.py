"""Resizing images to the network input, with the exact keypoint transform and its inverse.

Coordinates follow the pixel-centre convention used project-wide: pixel (row i, col j) has its
centre at (x=j, y=i). OpenCV's resize aligns pixel centres the same way, so a point at x maps to
`(x + 0.5) * scale - 0.5` (plus the letterbox padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Affine:
    """Per-axis scale and offset: `x_in = sx * x_orig + tx`, `y_in = sy * y_orig + ty`."""

    sx: float
    sy: float
    tx: float
    ty: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points: (N, 2) original pixels → (N, 2) input pixels."""
        return points * np.array([self.sx, self.sy]) + np.array([self.tx, self.ty])

    def invert(self, points: np.ndarray) -> np.ndarray:
        """points: (N, 2) input pixels → (N, 2) original pixels."""
        return (points - np.array([self.tx, self.ty])) / np.array([self.sx, self.sy])

    def as_array(self) -> np.ndarray:
        """(4,) float64 [sx, sy, tx, ty], the form batches carry."""
        return np.array([self.sx, self.sy, self.tx, self.ty], dtype=np.float64)


def resize_affine(height: int, width: int, size: tuple[int, int] | list[int],
                  mode: str = "resize") -> Affine:
    """The keypoint transform `resize_image` applies to an image of `height` x `width`."""
    return _affine(height, width, *_placement(height, width, size, mode))


def _affine(height: int, width: int, new_h: int, new_w: int, top: int, left: int) -> Affine:
    """Original to output pixels for an image of `height` x `width` placed at (`top`, `left`)
    with the size `new_h` x `new_w`."""
    sx, sy = new_w / width, new_h / height
    return Affine(sx, sy, 0.5 * sx - 0.5 + left, 0.5 * sy - 0.5 + top)


def _placement(height: int, width: int, size: tuple[int, int] | list[int],
               mode: str) -> tuple[int, int, int, int]:
    """Where the resized image lies in the output: its (height, width, top, left)."""
    out_h, out_w = size
    if mode == "resize":
        new_h, new_w, top, left = out_h, out_w, 0, 0
    elif mode == "letterbox":
        scale = min(out_h / height, out_w / width)
        new_h = min(out_h, max(1, round(height * scale)))
        new_w = min(out_w, max(1, round(width * scale)))
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return new_h, new_w, top, left


def resize_image(
    image: np.ndarray, size: tuple[int, int], mode: str = "resize"
) -> tuple[np.ndarray, Affine]:
    """Resizes `image` to `size` and returns the keypoint transform that goes with it.

    Args:
        image: (H, W, 3) uint8.
        size: Output (height, width).
        mode: "resize" stretches to fill; "letterbox" keeps the aspect ratio and pads with zeros,
            centring the image.

    Returns:
        The (height, width, 3) image and the Affine mapping original to output pixels.
    """
    out_h, out_w = size
    in_h, in_w = image.shape[:2]
    new_h, new_w, top, left = _placement(in_h, in_w, size, mode)
    affine = _affine(in_h, in_w, new_h, new_w, top, left)
    if (new_h, new_w) == (in_h, in_w):
        resized = image
    else:
        shrinking = new_h * new_w < in_h * in_w
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if (new_h, new_w) == (out_h, out_w):
        return np.ascontiguousarray(resized), affine
    canvas = np.zeros((out_h, out_w, 3), dtype=image.dtype)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, affine
