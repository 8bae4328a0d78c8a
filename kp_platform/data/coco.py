"""Reading and validating COCO keypoint JSON, and gathering each image's keypoints per channel.

Every problem is reported as an InputError that names the file and the image or annotation id,
before any training starts.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from kp_platform.data.channels import ChannelMap
from kp_platform.data.image_io import displayed_size
from kp_platform.errors import InputError
from kp_platform.files import read_json

REQUIRED_KEYS = ("images", "annotations", "categories")
DROP_REASONS = ("not_labelled", "occluded", "outside_image")
# Where a tool puts the centre of pixel (row i, column j): "center" at (j, i), this project's
# convention; "corner" at (j + 0.5, i + 0.5), integer coordinates being pixel corners.
PIXEL_ORIGINS = ("center", "corner")


def pixel_origin_offset(pixel_origin: str) -> float:
    """What to add to this project's coordinates to get `pixel_origin`'s (0 or 0.5).

    Raises:
        InputError: `pixel_origin` is not one of PIXEL_ORIGINS.
    """
    if pixel_origin not in PIXEL_ORIGINS:
        raise InputError(f"must be one of {list(PIXEL_ORIGINS)}, got {pixel_origin!r}",
                         "data.pixel_origin")
    return 0.5 if pixel_origin == "corner" else 0.0


@dataclass(frozen=True)
class ImageRecord:
    id: int
    file_name: str
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    keypoints: list[str]


@dataclass
class ImageKeypoints:
    """One image's ground truth, per channel.

    Attributes:
        points: Per channel an (n_c, 2) float64 array of (x, y) in original-image pixels, in
            annotation order, then the channel's keypoint order.
        dropped: Per channel, how many keypoints were dropped and why (see DROP_REASONS).
    """

    points: list[np.ndarray]
    dropped: list[Counter] = field(default_factory=list)


class CocoKeypoints:
    """A validated COCO keypoint dataset.

    Attributes:
        path: The JSON file.
        images: Image records in file order.
        categories: category id → Category.
        annotations: image id → its annotations, in file order (empty for negative images).
    """

    def __init__(
        self, path: Path, images, categories, annotations, pixel_origin: str = "center"
    ) -> None:
        self.path = path
        self.pixel_origin = pixel_origin
        self.offset = pixel_origin_offset(pixel_origin)
        self.images: list[ImageRecord] = images
        self.categories: dict[int, Category] = categories
        self.annotations: dict[int, list[dict[str, Any]]] = annotations
        self.image_by_id = {image.id: image for image in images}

    @classmethod
    def load(
        cls, path: str | Path, check_images: bool = True, pixel_origin: str = "center"
    ) -> CocoKeypoints:
        """Reads and validates `path`.

        Args:
            path: COCO keypoint JSON; `file_name`s are relative to its folder.
            check_images: Also open every image header to check it exists and matches the
                JSON's width and height.
            pixel_origin: The labels' pixel convention (PIXEL_ORIGINS); `image_keypoints`
                returns this project's ("center").

        Raises:
            InputError: naming the file and the offending image, annotation or category.
        """
        path = Path(path)
        return cls.from_dict(read_json(path), path, check_images, pixel_origin)

    @classmethod
    def from_dict(
        cls,
        data: Any,
        path: str | Path,
        check_images: bool = True,
        pixel_origin: str = "center",
    ) -> CocoKeypoints:
        """Validates an already-parsed COCO dict (e.g. from `json.load`).

        Args:
            data: The parsed JSON.
            path: Where it came from: named in errors, and its folder holds the images.
            check_images: See `load`.
            pixel_origin: See `load`.

        Raises:
            InputError: naming `path` and the offending image, annotation or category.
        """
        path = Path(path)
        src = str(path)
        if not isinstance(data, dict):
            raise InputError("expected a JSON object at the top level", src)
        pixel_origin_offset(pixel_origin)
        missing = [key for key in REQUIRED_KEYS if not isinstance(data.get(key), list)]
        if missing:
            raise InputError(f"missing top-level key(s) {missing} (or not a list)", src)
        categories = _parse_categories(data["categories"], src)
        images = _parse_images(data["images"], path.parent, src)
        if not images:
            raise InputError("the dataset has no images", src)
        image_ids = {image.id for image in images}
        annotations: dict[int, list[dict[str, Any]]] = {image.id: [] for image in images}
        for ann in data["annotations"]:
            _check_annotation(ann, image_ids, categories, src)
            annotations[ann["image_id"]].append(ann)
        if check_images:
            for image in images:
                _check_image_file(image, src)
        return cls(path, images, categories, annotations, pixel_origin)

    def image_keypoints(
        self, image_id: int, channels: ChannelMap, visible_only: bool = False
    ) -> ImageKeypoints:
        """Gathers one image's keypoints per channel, dropping and counting unusable ones.

        Labels are turned into this project's pixel convention first (`pixel_origin`). Dropped:
        v=0 (not labelled), v=1 when `visible_only` (occluded), and keypoints outside the image
        (x < 0, y < 0, x >= width, y >= height in this project's convention).
        """
        image = self.image_by_id[image_id]
        points: list[list[tuple[float, float]]] = [[] for _ in channels.names]
        dropped = [Counter() for _ in channels.names]
        for ann in self.annotations[image_id]:
            values = ann["keypoints"]
            for c, sources in enumerate(channels.sources):
                for category_id, k in sources:
                    if category_id != ann["category_id"]:
                        continue
                    x, y, v = values[3 * k : 3 * k + 3]
                    x, y = x - self.offset, y - self.offset
                    if v == 0:
                        dropped[c]["not_labelled"] += 1
                    elif v == 1 and visible_only:
                        dropped[c]["occluded"] += 1
                    elif not (0 <= x < image.width and 0 <= y < image.height):
                        dropped[c]["outside_image"] += 1
                    else:
                        points[c].append((float(x), float(y)))
        arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points]
        return ImageKeypoints(arrays, dropped)


def _parse_categories(items: list[Any], src: str) -> dict[int, Category]:
    categories: dict[int, Category] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            raise InputError(f"category {item!r} has no integer 'id'", src)
        cid = item["id"]
        keypoints = item.get("keypoints")
        if not isinstance(keypoints, list) or not all(isinstance(k, str) for k in keypoints):
            raise InputError(f"category {cid}: 'keypoints' must be a list of names", src)
        if cid in categories:
            raise InputError(f"category {cid}: duplicate category id", src)
        if len(set(keypoints)) != len(keypoints):
            raise InputError(f"category {cid}: keypoint names repeat", src)
        categories[cid] = Category(cid, str(item.get("name", cid)), keypoints)
    return categories


def _parse_images(items: list[Any], root: Path, src: str) -> list[ImageRecord]:
    images: list[ImageRecord] = []
    seen: set[int] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            raise InputError(f"image {item!r} has no integer 'id'", src)
        iid = item["id"]
        if iid in seen:
            raise InputError(f"image {iid}: duplicate image id", src)
        seen.add(iid)
        file_name, width, height = item.get("file_name"), item.get("width"), item.get("height")
        if not isinstance(file_name, str) or not file_name:
            raise InputError(f"image {iid}: missing 'file_name'", src)
        for key, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"image {iid}: '{key}' must be a positive integer", src)
        images.append(ImageRecord(iid, file_name, _image_path(root, iid, file_name, src),
                                  width, height))
    return images


def _image_path(root: Path, image_id: int, file_name: str, src: str) -> Path:
    """`root / file_name`, refused when it leaves `root` (absolute, `..`, or via a symlink).

    The JSON comes from someone else: an image it names must not make `kp data check`, training
    or the wandb image grid read (and upload) a file outside the dataset's folder.
    """
    where = f"image {image_id}: file_name {file_name!r}"
    if "\x00" in file_name:
        raise InputError(f"{where} contains a NUL character", src)
    if PurePosixPath(file_name).is_absolute() or PureWindowsPath(file_name).anchor:
        raise InputError(f"{where} is an absolute path; it must be relative to the JSON's "
                         "folder", src)
    path = root / file_name
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise InputError(f"{where} resolves outside the dataset's folder {str(root)!r}", src)
    return path


def _check_annotation(
    ann: Any, image_ids: set[int], categories: dict[int, Category], src: str
) -> None:
    if not isinstance(ann, dict):
        raise InputError(f"annotation {ann!r} is not an object", src)
    aid = ann.get("id", "?")
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not _is_int(image_id) or image_id not in image_ids:
        raise InputError(f"annotation {aid}: unknown image id {image_id!r}", src)
    category = categories.get(category_id) if _is_int(category_id) else None
    if category is None:
        raise InputError(f"annotation {aid}: unknown category id {ann.get('category_id')!r}", src)
    values = ann.get("keypoints")
    expected = 3 * len(category.keypoints)
    if not isinstance(values, list) or len(values) != expected:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise InputError(
            f"annotation {aid}: 'keypoints' has {got} values, expected {expected} "
            f"(3 x {len(category.keypoints)} keypoints of category {category.name!r})",
            src,
        )
    for k in range(len(category.keypoints)):
        x, y, v = values[3 * k : 3 * k + 3]
        name = category.keypoints[k]
        numbers = all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (x, y, v))
        if not numbers:
            raise InputError(f"annotation {aid}: keypoint {name!r} has non-numeric values", src)
        if not (_is_finite(x) and _is_finite(y)):
            raise InputError(f"annotation {aid}: keypoint {name!r} has NaN/infinite values", src)
        if v not in (0, 1, 2):
            raise InputError(
                f"annotation {aid}: keypoint {name!r} has visibility {v!r}, not 0, 1 or 2", src
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: int | float) -> bool:
    """A finite float, or an int that converts to one (10**400 does not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_image_file(image: ImageRecord, src: str) -> None:
    try:
        with Image.open(image.path) as handle:
            size = displayed_size(handle)  # labelling tools label the turned (displayed) view
    except FileNotFoundError:
        raise InputError(f"image {image.id}: file {image.file_name!r} not found", src) from None
    except (OSError, UnidentifiedImageError):
        raise InputError(f"image {image.id}: cannot read {image.file_name!r}", src) from None
    if size != (image.width, image.height):
        raise InputError(
            f"image {image.id}: {image.file_name!r} is {size[0]}x{size[1]}, "
            f"the JSON says {image.width}x{image.height}",
            src,
        )
