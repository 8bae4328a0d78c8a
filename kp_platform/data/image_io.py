"""Reading any image file as 8-bit RGB: grayscale, palette, RGBA and 16-bit inputs included."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kp_platform.errors import InputError


def read_rgb(path: str | Path) -> np.ndarray:
    """Reads an image as (H, W, 3) uint8 RGB.

    16-bit images are scaled to 8 bits, alpha is dropped, one-channel images are repeated.

    Raises:
        InputError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        reason = "not found" if not path.exists() else "cannot be decoded as an image"
        raise InputError(reason, str(path))
    return to_rgb8(raw)


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
