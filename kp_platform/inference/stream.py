"""Prediction over a stream of images and video frames: a loader decodes and resizes, the
detector runs batches on its device, and entries (optionally rendered) come out in input order.

With N loader workers, worker w reads the frames of batches w, w + N, w + 2N, ...; PyTorch's
loader takes batches from its workers in turn, so batches arrive in the input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from kp_platform.data.resize import resize_image
from kp_platform.errors import InputError
from kp_platform.inference.detector import Detector
from kp_platform.inference.render import Renderer
from kp_platform.inference.sources import Source, collect_sources, count_frames, iter_frames


class FrameDataset(IterableDataset):
    """Every image and video frame of the sources, resized to the network input.

    Args:
        sources: From `collect_sources`.
        rule: Its id rule.
        input_size: (height, width) of the network input.
        resize_mode: "resize" or "letterbox".
        batch_size: Frames per batch (workers split the stream by whole batches).
        keep_pixels: Also yield the original pixels (to render them).
    """

    def __init__(self, sources: Sequence[Source], rule: str, input_size: tuple[int, int],
                 resize_mode: str, batch_size: int, keep_pixels: bool) -> None:
        super().__init__()
        self.sources, self.rule = list(sources), rule
        self.input_size, self.resize_mode = input_size, resize_mode
        self.batch_size, self.keep_pixels = batch_size, keep_pixels

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, me = (1, 0) if info is None else (info.num_workers, info.id)
        batch = self.batch_size

        def keep(position: int) -> bool:
            return (position // batch) % workers == me

        try:
            for frame in iter_frames(self.sources, self.rule, keep if workers > 1 else None):
                if frame.pixels is None:
                    continue
                resized, affine = resize_image(frame.pixels, self.input_size, self.resize_mode)
                if not self.keep_pixels:
                    frame.pixels = None
                image = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
                yield {"image": image, "affine": affine.as_array(), "frame": frame}
        except InputError as exc:  # re-raised in the main process, without a worker traceback
            yield {"error": (str(exc), None)}


def collate_frames(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks (B, 3, h, w) uint8 images and (B, 4) affines; keeps the frames as a list."""
    errors = [s["error"] for s in samples if "error" in s]
    if errors:
        return {"error": errors[0]}
    return {"image": torch.stack([s["image"] for s in samples]),
            "affine": np.stack([s["affine"] for s in samples]),
            "frames": [s["frame"] for s in samples]}


def predict_sources(
    detector: Detector,
    sources: Sequence[Source],
    rule: str,
    batch_size: int = 8,
    workers: int = 0,
    min_score: float | None = None,
    render: str | Path | None = None,
    progress: bool = False,
) -> Iterator[dict[str, Any]]:
    """Predicts on every image and video frame, in input order.

    Args:
        detector: The model and its device.
        sources: From `collect_sources`.
        rule: Its id rule.
        batch_size: Frames per forward pass.
        workers: Loader processes decoding images and frames (0: in this process).
        min_score: Return (and draw) peaks scoring above it instead of above the
            checkpoint's `eval.score_threshold`.
        render: A folder for copies of the images and videos with the detections drawn.
        progress: Show a progress bar (frames per second) once it runs for 2 seconds.

    Yields:
        Entries `{"image_id", "file_name" | ("source", "frame"), "detections"}` with, per
        channel, an (n, 3) float64 array of (x, y, score) in original-image pixels.
    """
    from tqdm import tqdm

    if batch_size < 1 or workers < 0:
        raise InputError(f"need batch size >= 1 and workers >= 0, got {batch_size}, {workers}",
                         "--batch-size")
    data = detector.config.data
    dataset = FrameDataset(sources, rule, tuple(data.input_size), data.resize_mode, batch_size,
                           keep_pixels=render is not None)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_frames,
                        pin_memory=detector.device.type == "cuda")
    renderer = Renderer(render, sources, detector.channel_names) if render is not None else None
    bar = tqdm(total=count_frames(sources) if progress else None, unit="frame",
               desc="predict", disable=not progress, dynamic_ncols=True, delay=2.0)
    try:
        for batch in loader:
            if "error" in batch:
                raise InputError(batch["error"][0])
            results = detector.predict_batch(batch["image"], batch["affine"], min_score)
            for frame, per_channel in zip(batch["frames"], results, strict=True):
                if renderer is not None:
                    renderer.add(frame, list(per_channel.values()))
                yield {**frame.entry(sources), "detections": per_channel}
            bar.update(len(results))
    finally:
        bar.close()
        if renderer is not None:
            renderer.close()


def predict_inputs(
    detector: Detector, inputs: Sequence[str | Path], **options: Any
) -> Iterator[dict[str, Any]]:
    """`predict_sources` on image files, folders, COCO files and videos (see `collect_sources`
    for the image-id rule); `options` are those of `predict_sources`."""
    sources, rule = collect_sources(inputs)
    yield from predict_sources(detector, sources, rule, **options)
