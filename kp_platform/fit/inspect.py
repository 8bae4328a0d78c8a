"""What `kp fit` reads from a labelled data set before it decides anything."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from kp_platform.data import CocoKeypoints, resolve_channels, summarize_dataset

# A name's parts: words (camelCase split), runs of capitals, digits, and the separators between.
_TOKENS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^A-Za-z\d]+")
_SIDES = {"left": "right", "Left": "Right", "LEFT": "RIGHT", "l": "r", "L": "R"}
_SIDES.update({v: k for k, v in _SIDES.items()})


@dataclass(frozen=True)
class DataFacts:
    """A training set as `kp fit` sees it."""

    path: Path
    images: int
    image_size: tuple[int, int]
    """The median image (height, width) in pixels."""
    sizes_vary: bool
    channels: list[str]
    """One channel per keypoint type (`category.keypoint` where there are several categories)."""
    max_per_image: dict[str, int]
    """Per channel, the most labelled keypoints in one image."""
    keypoints: int
    """Labelled keypoints in all."""
    flip_pairs: list[list[str]]
    """Channel pairs whose names differ only by a left/right word."""

    @property
    def single_instance(self) -> list[str]:
        """The channels with at most one keypoint in every image: top-1 channels."""
        return [name for name in self.channels if self.max_per_image[name] <= 1]


def inspect_data(path: str | Path) -> DataFacts:
    """Reads and validates a COCO keypoint training set (every image file is opened).

    Raises:
        InputError: naming the file and what is wrong with it.
    """
    coco = CocoKeypoints.load(path)
    channels = resolve_channels(None, coco.categories, str(path))
    summary = summarize_dataset(coco, channels)
    heights = [image.height for image in coco.images]
    widths = [image.width for image in coco.images]
    per_channel = summary["channels"]
    return DataFacts(
        path=Path(path),
        images=len(coco.images),
        image_size=(int(statistics.median(heights)), int(statistics.median(widths))),
        sizes_vary=len(set(zip(heights, widths, strict=True))) > 1,
        channels=list(channels.names),
        max_per_image={name: per_channel[name]["max_per_image"] for name in channels.names},
        keypoints=sum(stats["keypoints"] for stats in per_channel.values()),
        flip_pairs=flip_pairs_from_names(list(channels.names)),
    )


def flip_pairs_from_names(names: list[str]) -> list[list[str]]:
    """Pairs of names that differ only in a left/right word: `sleeve_left`/`sleeve_right`,
    `leftEar`/`rightEar`, `L_paw`/`R_paw`. A letter inside a word (`paw1LH`) is no side: an
    unclear name gives no pair, and without pairs no flip is used."""
    known = set(names)
    pairs: list[list[str]] = []
    for name in names:
        tokens = _TOKENS.findall(name)
        for i, token in enumerate(tokens):
            if token not in _SIDES or token.lower() not in ("left", "l"):
                continue
            other = "".join([*tokens[:i], _SIDES[token], *tokens[i + 1:]])
            if other in known and other != name:
                pairs.append([name, other])
                break
    return pairs
