"""A deterministic train/validation split whose membership depends only on the split seed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def split_train_val(
    image_ids: Sequence[int], val_fraction: float, split_seed: int
) -> tuple[list[int], list[int]]:
    """Splits image ids into training and validation ids.

    Each id gets a rank from a hash of (split_seed, id); the lowest-ranked
    `round(len * val_fraction)` ids (at least one, when there are two or more images) go to
    validation. The training seed plays no part, so sweeping it never moves an image between
    the sets, and adding images to a dataset moves few of the existing ones.

    Returns:
        (train_ids, val_ids), each in the input order.
    """
    if len(image_ids) < 2:
        return list(image_ids), []
    num_val = min(len(image_ids) - 1, max(1, round(len(image_ids) * val_fraction)))
    val = set(pick_images(image_ids, num_val, split_seed))
    return [i for i in image_ids if i not in val], [i for i in image_ids if i in val]


def pick_images(image_ids: Sequence[int], count: int, split_seed: int) -> list[int]:
    """A fixed subset of `count` ids (all when `count` is 0 or too large), in input order,
    chosen by the same hash as the split."""
    if count <= 0 or count >= len(image_ids):
        return list(image_ids)
    chosen = set(sorted(image_ids, key=lambda image_id: _rank(split_seed, image_id))[:count])
    return [i for i in image_ids if i in chosen]


def _rank(split_seed: int, image_id: int) -> bytes:
    return hashlib.sha256(f"{split_seed}:{image_id}".encode()).digest()
