"""Reading any image file as 8-bit RGB, as it is displayed: EXIF orientation applied.

Grayscale, palette, RGBA and 16-bit inputs included. Labelling tools show a phone photo turned
by its EXIF orientation tag and label that view, so the pixels have to be turned the same way.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from kp_platform.errors import InputError


def read_rgb(path: str | Path) -> np.ndarray:
    """Reads an image as (H, W, 3) uint8 RGB, turned as its EXIF orientation tag says.

    16-bit images are scaled to 8 bits, alpha is dropped, one-channel images are repeated.

    Raises:
        InputError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        reason = "not found" if not path.exists() else "cannot be decoded as an image"
        raise InputError(reason, str(path))
    return apply_orientation(to_rgb8(raw), exif_orientation(path))


# EXIF orientation tag (0x0112): 1 as stored; 2-8 mirror and/or rotate the stored pixels.
ORIENTATION_TAG = 0x0112
SWAPS_AXES = (5, 6, 7, 8)


def exif_orientation(path: str | Path) -> int:
    """The file's EXIF orientation (1-8); 1 when there is none or it cannot be read."""
    try:
        with Image.open(path) as handle:
            value = handle.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def displayed_size(handle: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as displayed, after its EXIF orientation."""
    try:
        value = handle.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):
        value = 1
    width, height = handle.size
    return (height, width) if value in SWAPS_AXES else (width, height)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turns stored (H, W, ...) pixels into the displayed view (what PIL's exif_transpose does)."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.swapaxes(0, 1)
    elif orientation == 6:
        pixels = np.rot90(pixels, k=-1)
    elif orientation == 7:
        pixels = np.rot90(pixels, k=2).swapaxes(0, 1)
    elif orientation == 8:
        pixels = np.rot90(pixels, k=1)
    return np.ascontiguousarray(pixels)


def to_rgb8(raw: np.ndarray) -> np.ndarray:
    """Converts an OpenCV-decoded array (BGR/BGRA/gray, 8 or 16 bit) to (H, W, 3) uint8 RGB."""
    if raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    elif raw.dtype != np.uint8:
        scaled = np.clip(raw.astype(np.float64), 0.0, 1.0) * 255.0
        raw = np.round(scaled).astype(np.uint8)
    if raw.ndim == 2:
        return np.repeat(raw[:, :, None], 3, axis=2)
    if raw.shape[2] == 1:
        return np.repeat(raw, 3, axis=2)
    if raw.shape[2] == 4:
        return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB, as the loaders yield it, as float32 in [0, 1].

    Loaders move uint8 (a quarter of float32's bytes through their workers' shared memory and
    to the device); training, evaluation and prediction convert on the device.
    """
    return images.float() / 255
