"""What `kp predict` reads: image files, folders (recursively), COCO files and videos.

Image ids never collide within one prediction file:

- a single COCO file: the ids of its images (so the file can be scored with `kp eval --pred`);
- a single video: the frame index, from 0;
- anything else (several inputs, a folder, an image): 1, 2, 3, ... in reading order: inputs in
  the order given, a folder's files sorted by their path relative to it, a video frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kp_platform.data.image_io import read_rgb, to_rgb8
from kp_platform.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class Source:
    """One image file or one video to predict on.

    Attributes:
        path: The file.
        is_video: Read frame by frame with OpenCV.
        name: Its path under a `--render` folder (relative, unique among the sources).
        coco_id: The image id a COCO file gives it, else None.
    """

    path: Path
    is_video: bool
    name: str
    coco_id: int | None = None


@dataclass
class Frame:
    """One image or video frame, read.

    Attributes:
        image_id: Its id in the prediction file.
        source: Index into the source list.
        frame: The frame index in its video, None for an image.
        pixels: (H, W, 3) uint8 RGB; None when it was skipped (another loader worker reads it).
    """

    image_id: int
    source: int
    frame: int | None
    pixels: np.ndarray | None

    def entry(self, sources: Sequence[Source]) -> dict[str, Any]:
        """The prediction-file fields that say where the detections come from."""
        src = sources[self.source]
        if self.frame is None:
            return {"image_id": self.image_id, "file_name": str(src.path)}
        return {"image_id": self.image_id, "source": str(src.path), "frame": self.frame}


def collect_sources(inputs: Sequence[str | Path]) -> tuple[list[Source], str]:
    """Expands the inputs into image files and videos.

    Args:
        inputs: Image files, video files, folders (searched recursively for both) and COCO
            JSON files (their images).

    Returns:
        The sources in reading order, and the id rule: "coco", "frame" or "sequential".

    Raises:
        InputError: a missing input, an unsupported file type, nothing to read.
    """
    from kp_platform.data.coco import CocoKeypoints

    sources: list[Source] = []
    names: set[str] = set()

    def add(path: Path, name: str, coco_id: int | None = None) -> None:
        if name in names:  # the same file name from two inputs
            name = f"{len(sources) + 1}-{name.replace('/', '-')}"
        names.add(name)
        is_video = path.suffix.lower() in VIDEO_SUFFIXES
        if is_video:
            open_video(path).release()  # fail before anything runs
        sources.append(Source(path=path, is_video=is_video, name=name, coco_id=coco_id))

    for text in inputs:
        path = Path(text)
        suffix = path.suffix.lower()
        if path.is_dir():
            files = sorted((p for p in path.rglob("*") if p.is_file()
                            and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES),
                           key=lambda p: p.relative_to(path).as_posix())
            for file in files:
                add(file, f"{path.resolve().name}/{file.relative_to(path).as_posix()}")
        elif not path.is_file():
            raise InputError("no such image, video, folder or COCO file", str(path))
        elif suffix == ".json":
            coco = CocoKeypoints.load(path)
            for image in coco.images:
                add(image.path, f"{path.parent.resolve().name}/{image.file_name}", image.id)
        elif suffix in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            add(path, path.name)
        else:
            raise InputError(f"unsupported file type {suffix or '(none)'!r}; images "
                             f"{IMAGE_SUFFIXES}, videos {VIDEO_SUFFIXES} or a COCO .json",
                             str(path))
    if not sources:
        raise InputError("no images found (no image or video files)",
                         " ".join(str(i) for i in inputs))
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    if single and Path(inputs[0]).suffix.lower() == ".json":
        rule = "coco"
    elif single and sources[0].is_video:
        rule = "frame"
    else:
        rule = "sequential"
    return sources, rule


def count_frames(sources: Sequence[Source]) -> int:
    """Images plus video frames (as the container reports them), for progress bars."""
    total = 0
    for src in sources:
        if src.is_video:
            capture = cv2.VideoCapture(str(src.path))
            total += max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            capture.release()
        else:
            total += 1
    return total


def video_properties(path: Path) -> tuple[float, int, int]:
    """(frames per second, width, height) of a video."""
    capture = open_video(path)
    try:
        return (capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()


def open_video(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise InputError("cannot be opened as a video (by OpenCV)", str(path))
    return capture


def iter_frames(
    sources: Sequence[Source], rule: str, keep: Callable[[int], bool] | None = None
) -> Iterator[Frame]:
    """Reads every image and video frame, in order.

    Args:
        sources: From `collect_sources`.
        rule: The id rule from `collect_sources`.
        keep: Optional callable (position in the stream) → bool; frames it rejects are
            yielded without pixels (images are not read, video frames only grabbed).

    Yields:
        Frames with their ids and (H, W, 3) uint8 RGB pixels.
    """
    position = 0
    for index, src in enumerate(sources):
        if not src.is_video:
            image_id = src.coco_id if rule == "coco" else position + 1
            wanted = keep is None or keep(position)
            yield Frame(image_id, index, None, read_rgb(src.path) if wanted else None)
            position += 1
            continue
        capture = open_video(src.path)
        try:
            frame = 0
            while True:
                wanted = keep is None or keep(position)
                if wanted:
                    ok, raw = capture.read()
                else:
                    ok, raw = capture.grab(), None
                if not ok:
                    break
                image_id = frame if rule == "frame" else position + 1
                yield Frame(image_id, index, frame, to_rgb8(raw) if raw is not None else None)
                frame += 1
                position += 1
        finally:
            capture.release()
        if frame == 0:
            raise InputError("no frames could be read", str(src.path))
