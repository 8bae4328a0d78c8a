"""Using a trained checkpoint: `Detector` for predictions, `evaluate_checkpoint` for metrics.

Both reuse the validation code: the same resizing, the same decoding on the device, the same
mapping back to original-image pixels, and (for metrics) the same Lightning validation loop.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from kp_platform.config import Config
from kp_platform.config.schema import AUTO
from kp_platform.data.channels import parse_channels, resolve_channels
from kp_platform.data.coco import CocoKeypoints, pixel_origin_offset
from kp_platform.data.datamodule import ImagesOnDevice
from kp_platform.data.dataset import (
    KeypointDataset,
    collate_keypoints,
    single_instance_channels,
)
from kp_platform.data.image_io import read_rgb, to_unit_float
from kp_platform.data.resize import resize_image
from kp_platform.errors import InputError
from kp_platform.heatmaps import Detections, decode_heatmaps
from kp_platform.inference.settings import (
    ACCELERATORS,
    DecodeOptions,
    autocast,
    check_precision,
    resolve_device,
    trainer_accelerator,
)
from kp_platform.models.module import KeypointModule
from kp_platform.ranks import check_batches, validation_sampler
from kp_platform.training.checkpoints import checkpoint_config, read_checkpoint
from kp_platform.training.distributed import build_strategy


def load_module(path: str | Path, map_location: str = "cpu") -> KeypointModule:
    """Rebuilds the KeypointModule of a checkpoint (weights-only loading) in eval mode."""
    checkpoint = read_checkpoint(path)
    config, channel_names = checkpoint_config(checkpoint, str(path))
    module = KeypointModule(config, channel_names)
    module.load_state_dict(checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    return module.to(map_location).eval()


class Detector:
    """Keypoint detection with a trained model, batched, decoding on the model's device.

    Args:
        module: A trained KeypointModule (see `from_checkpoint`).
        device: Where the network and the peak decoding run: a torch device, or an
            accelerator name ("auto" picks CUDA, else MPS, else the CPU).
        precision: "32-true", or "16-mixed" / "bf16-mixed" (the network under autocast; the
            decoding always in float32).
    """

    def __init__(self, module: KeypointModule, device: str | torch.device = "auto",
                 precision: str = "32-true") -> None:
        if isinstance(device, str) and device in ACCELERATORS:
            device = resolve_device(device)
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.module = module.to(self.device).eval()
        self.options = DecodeOptions.from_config(module.cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto",
                        precision: str = "32-true") -> Detector:
        """A Detector for a checkpoint (weights-only loading).

        Args:
            path: The checkpoint.
            device: A torch device or an accelerator name (auto, cpu, cuda, mps).
            precision: See the class.
        """
        return cls(load_module(path), device, precision)

    @property
    def config(self) -> Config:
        return self.module.cfg

    @property
    def channel_names(self) -> list[str]:
        return self.module.channel_names

    def prepare(self, pixels: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Resizes one image to the network input.

        Args:
            pixels: (H, W, 3) uint8 RGB.

        Returns:
            (3, h, w) uint8 tensor at `data.input_size`, and its (4,) affine (sx, sy, tx, ty).
        """
        data = self.config.data
        resized, affine = resize_image(_as_rgb(pixels), tuple(data.input_size),
                                       data.resize_mode)
        return torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1), \
            affine.as_array()

    @torch.no_grad()
    def predict_batch(
        self, images: Tensor, affines: np.ndarray, min_score: float | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Runs the network and the peak decoding on the device for one batch.

        Args:
            images: (B, 3, h, w) uint8 RGB at `data.input_size` (from `prepare`).
            affines: (B, 4) per image (sx, sy, tx, ty), original to input pixels.
            min_score: Return peaks scoring above it instead of above `eval.score_threshold`
                (`eval.score_floor` gives the peaks validation scores).

        Returns:
            Per image, channel name → (n, 3) float64 array of (x, y, score) in original-image
            pixels, best first, in the labels' pixel convention (`data.pixel_origin`); a top-1
            channel (`eval.top1_channels`) gives at most one peak: the one the pose prior
            chooses (`eval.pose_prior`), else its best.
        """
        batch = to_unit_float(images.to(self.device, non_blocking=True))
        with autocast(self.device, self.precision):
            logits = self.module(batch)
        options = self.options if min_score is None else dataclasses.replace(
            self.options, score_threshold=min_score)
        detections = self.module.choose_top1(
            decode_heatmaps(torch.sigmoid(logits.float()), **options.as_kwargs()))
        if detections.xy.device.type == "mps":  # no float64 on MPS; only detections move
            detections = Detections(detections.xy.cpu(), detections.scores.cpu(),
                                    detections.valid.cpu())
        per_image = detections.to_original(np.asarray(affines)).to_lists()
        offset = pixel_origin_offset(self.config.data.pixel_origin)
        top1 = set(self.module.top1_channels)
        results = []
        for channels in per_image:
            if offset:  # back into the convention the labels were written in
                channels = [_shifted(points, offset) for points in channels]
            results.append({name: points[:1] if name in top1 else points
                            for name, points in zip(self.channel_names, channels, strict=True)})
        return results

    def predict(
        self, images: Sequence[np.ndarray | str | Path], batch_size: int = 8,
        min_score: float | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """Detects keypoints in images.

        Args:
            images: File paths or (H, W, 3) uint8 RGB arrays, any sizes.
            batch_size: Images per forward pass.
            min_score: Return peaks scoring above it instead of above `eval.score_threshold`
                (`eval.score_floor` gives the peaks validation scores).

        Returns:
            Per image, channel name → (n, 3) float64 array of (x, y, score) in original-image
            pixels, best first, in the pixel convention of the labels (`data.pixel_origin`); a
            top-1 channel (`eval.top1_channels`) gives at most one peak: the one the pose prior
            chooses (`eval.pose_prior`), else its best.
        """
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(images), batch_size):
            prepared = [self.prepare(read_rgb(item) if isinstance(item, (str, Path)) else item)
                        for item in images[start : start + batch_size]]
            results += self.predict_batch(torch.stack([p[0] for p in prepared]),
                                          np.stack([p[1] for p in prepared]), min_score)
        return results


def evaluate_checkpoint(
    path: str | Path,
    coco_json: str | Path,
    batch_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    accelerator: str = "auto",
    devices: int = 1,
    precision: str = "32-true",
) -> dict[str, Any]:
    """Metrics of a checkpoint on a COCO dataset, through the Lightning validation loop.

    With `devices` > 1 the images are split across processes (DDP, none repeated) and the
    gathered metric is exactly the one-process metric (kp_platform/ranks.py).

    Args:
        path: The checkpoint.
        coco_json: Ground truth; its categories must provide the checkpoint's channels.
        batch_size: Default: the checkpoint's `data.batch_size`.
        overrides: Replacement `eval` settings, e.g. {"thresholds": [1, 2]}.
        accelerator: auto (CUDA, else MPS, else the CPU), cpu, cuda or mps.
        devices: Processes, one device each.
        precision: "32-true", "16-mixed" or "bf16-mixed".

    Returns:
        The metrics dict (README, "Metrics").
    """
    module = load_module(path)
    for key, value in (overrides or {}).items():
        setattr(module.cfg.eval, key, value)
    data = module.cfg.data
    coco = CocoKeypoints.load(coco_json, pixel_origin=getattr(data, "pixel_origin", "center"))
    specs = parse_channels(data.channels, source="checkpoint data.channels")
    channels = resolve_channels(specs, coco.categories, source=str(coco_json))
    if list(channels.names) != module.channel_names:
        raise InputError(f"channels {list(channels.names)} differ from the checkpoint's "
                         f"{module.channel_names}", str(coco_json))
    dataset = KeypointDataset(coco, channels, input_size=data.input_size,
                              resize_mode=data.resize_mode, visible_only=data.visible_only)
    if module.cfg.eval.top1_channels == AUTO:  # a checkpoint from before top-1 metrics
        module.cfg.eval.top1_channels = single_instance_channels(dataset)
    module.configure_metrics()
    if not isinstance(devices, int) or devices < 1:
        raise InputError(f"devices must be a whole number >= 1, got {devices!r}", "--devices")
    batch_size = batch_size or data.batch_size
    check_batches(len(dataset), batch_size, devices)  # before any process starts
    trainer = pl.Trainer(accelerator=trainer_accelerator(accelerator), devices=devices,
                         strategy=build_strategy(devices), precision=check_precision(precision),
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*num_workers.*")
        trainer.validate(module, verbose=False,
                         datamodule=_EvaluationData(dataset, batch_size))
    assert module.last_metrics is not None
    return module.last_metrics


class _EvaluationData(ImagesOnDevice):
    """One validation loader; under DDP each image goes to exactly one process."""

    def __init__(self, dataset: KeypointDataset, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=collate_keypoints,
                          sampler=validation_sampler(self.dataset, self.trainer,
                                                     self.batch_size))


def _shifted(points: np.ndarray, offset: float) -> np.ndarray:
    """(n, 3) (x, y, score) with `offset` added to x and y."""
    points = np.array(points, dtype=np.float64)
    points[:, :2] += offset
    return points


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 RGB array, got {image.dtype} "
                         f"{image.shape}", "images")
    return image
