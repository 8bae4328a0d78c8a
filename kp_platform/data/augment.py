"""Keypoint-aware augmentation built from the config: albumentations transforms by name.

A horizontal flip also swaps the configured left/right channel pairs, so a flipped left sleeve is
labelled as the right one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np

from kp_platform.errors import InputError

FLIP_TRANSFORMS = ("HorizontalFlip",)
_EDGE = 1e-3  # keeps clipped points inside albumentations' half-open [0, size) box


class Augmenter:
    """Applies an albumentations pipeline to an image and its labelled keypoints.

    Args:
        transforms: Built albumentations transforms, applied in order.
        flip_permutation: Channel index each channel becomes after a horizontal flip.
        seed: Seeds albumentations' own generator (reproducible pipelines).
    """

    def __init__(
        self, transforms: list[Any], flip_permutation: Sequence[int], seed: int | None = None
    ) -> None:
        self.flip_permutation = np.asarray(flip_permutation, dtype=np.int64)
        self.pipeline = A.Compose(
            transforms,
            keypoint_params=A.KeypointParams(
                format="xy", label_fields=["channel_ids"], remove_invisible=True
            ),
            save_applied_params=True,
            seed=seed,
        )

    def __call__(
        self, image: np.ndarray, points: np.ndarray, channel_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augments one sample.

        Args:
            image: (H, W, 3) uint8.
            points: (N, 2) float (x, y) in the image's pixels.
            channel_ids: (N,) int channel of each point.

        Returns:
            The augmented image, the surviving points and their (possibly swapped) channels.
        """
        # Shrinking maps the centres of an image's border pixels up to half a (new) pixel outside
        # the resized image, which albumentations rejects: such points go onto its edge.
        height, width = image.shape[:2]
        points = np.clip(points.reshape(-1, 2), 0.0, [width - _EDGE, height - _EDGE])
        out = self.pipeline(image=image, keypoints=points, channel_ids=channel_ids.tolist())
        kept = np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)[:, :2]
        ids = np.asarray(out["channel_ids"], dtype=np.int64)
        flips = sum(name in FLIP_TRANSFORMS for name, _ in out["applied_transforms"])
        if flips % 2 == 1:
            ids = self.flip_permutation[ids]
        return out["image"], kept, ids


def build_augmenter(
    specs: list[dict[str, Any]], flip_permutation: Sequence[int], seed: int | None = None
) -> Augmenter | None:
    """Builds the training augmentation from `data.augment`; None when the list is empty.

    Args:
        specs: `[{"name": "HorizontalFlip", "p": 0.5}, ...]`: albumentations class names and
            their keyword arguments.
        flip_permutation: See Augmenter.
        seed: See Augmenter.

    Raises:
        InputError: an unknown transform name or arguments the transform rejects.
    """
    if not specs:
        return None
    transforms = []
    for i, spec in enumerate(specs):
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
        cls = getattr(A, name, None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            known = [n for n in dir(A) if isinstance(getattr(A, n), type)]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(
                f"unknown albumentations transform {name!r}{hint}", f"data.augment[{i}]"
            )
        accepted = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(params) - set(accepted))
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            raise InputError(f"{name} takes no argument(s) {unknown}", f"data.augment[{i}]")
        try:
            transforms.append(cls(**params))
        except (TypeError, ValueError) as exc:
            # pydantic's messages span lines; keep the error to one line.
            message = " ".join(str(exc).split())[:300]
            raise InputError(f"{name}: {message}", f"data.augment[{i}]") from None
    return Augmenter(transforms, flip_permutation, seed)
