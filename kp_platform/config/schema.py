"""The typed config tree: one dataclass per section, defaults that run on a CPU.

Every `kp train` run and every sweep trial is described by one `Config`. Add a field here and it
is settable from YAML and from `section.key=value` overrides at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Per field: (value is valid, what a valid value looks like).
Checks = dict[str, tuple[bool, str]]
AUTO = "auto"
"""A default computed from the data when a run starts (`kp_platform.config.auto`)."""


@dataclass
class DataConfig:
    """Where the COCO files are and how images and keypoints become tensors."""

    train: str | None = None
    """COCO keypoint JSON of the training set."""
    val: str | None = None
    """COCO JSON of the validation set; when empty, `val_fraction` of `train` is split off."""
    test: str | None = None
    """COCO JSON of a held-out test set (optional)."""
    replay: str | None = None
    """COCO JSON of extra training images mixed into every training epoch, never validated
    on: while fine-tuning on a few real images, the pretraining set keeps rare channels from
    being forgotten."""
    replay_images: int = 0
    """How many `replay` images (a fixed subset chosen by `split_seed`); 0 takes them all."""
    val_fraction: float | Literal["auto"] = AUTO
    """The share of `train` split off for validation when `val` is empty; `auto`: 20%, or 5%
    where 20% would be fewer than 100 images (`config.auto.val_fraction_for`)."""
    split_seed: int = 0
    """Seeds only the train/val split, so sweeping the training seed never moves images."""
    channels: Any = None
    """List of {name, keypoints}, the compact string `a=b:c`, or a channel YAML path.
    Empty: one channel per `category.keypoint` type."""
    flip_pairs: list[list[str]] = field(default_factory=list)
    """Pairs of channel names swapped by a horizontal flip (left/right symmetric keypoints)."""
    visible_only: bool = False
    """Keep only keypoints with v=2 (v=1, labelled but occluded, is kept by default)."""
    pixel_origin: Literal["center", "corner"] = "center"
    """The labels' pixel convention: `center` puts pixel (row i, column j)'s centre at (j, i),
    `corner` at (j + 0.5, i + 0.5). Applied when reading labels, inverted in predictions."""
    input_size: list[int] = field(default_factory=lambda: [256, 256])
    """Network input as [height, width]."""
    resize_mode: Literal["resize", "letterbox"] = "resize"
    augment: list[dict[str, Any]] | Literal["auto"] = AUTO
    """Albumentations transforms by name with their parameters, e.g.
    `[{name: HorizontalFlip, p: 0.5}, {name: RandomBrightnessContrast, p: 0.3}]`."""
    batch_size: int = 8
    num_workers: int = 0
    cache_mb: int = 4096
    """Keep the decoded, resized images in memory when a split's images fit in this many MiB
    (0: read every image from disk at every epoch). They are read once, in threads, when the
    loader is built, and loader workers share them. Decoding every image at every epoch left
    a GPU idle half the time (benchmarks/RESULTS.md, GPU check)."""

    def checks(self) -> Checks:
        return {
            "val_fraction": (self.val_fraction == AUTO or 0.0 < self.val_fraction < 1.0,
                             "must be in (0, 1) or auto"),
            "replay_images": (self.replay_images >= 0, "must be >= 0 (0 takes all)"),
            "input_size": (
                len(self.input_size) == 2 and min(self.input_size) >= 8,
                "must be [height, width], each >= 8",
            ),
            "batch_size": (self.batch_size >= 1, "must be >= 1"),
            "num_workers": (self.num_workers >= 0, "must be >= 0"),
            "cache_mb": (self.cache_mb >= 0, "must be >= 0 (0: no cache)"),
            "flip_pairs": (
                all(len(pair) == 2 for pair in self.flip_pairs),
                "must be a list of [left, right] channel-name pairs",
            ),
            "augment": (
                self.augment == AUTO
                or all(isinstance(t.get("name"), str) for t in self.augment),
                "each transform needs a 'name'",
            ),
        }


@dataclass
class ModelConfig:
    """The network: a backbone from the registry and a heatmap head."""

    backbone: str = "unet"
    """A registered name (`unet`, `dilated_cnn`, `seed_unet`, ...) or `timm:<encoder>`."""
    pretrained: bool = False
    """Download the encoder's pretrained weights (timm encoders; needs internet)."""
    pretrained_path: str | None = None
    """A local encoder weights file (a state dict), loaded with weights_only=True."""
    width: int = 8
    """Channels of the first stage (from-scratch backbones) or of the decoder (timm)."""
    depth: int | Literal["auto"] = AUTO
    """Down-sampling stages (unet) or dilated blocks (dilated_cnn); `auto`: for the unet, the
    stages that bring the input's shorter side to at most 8 cells (a receptive field spanning
    the frame, which tells look-alike keypoints apart by what lies far from them: 5 at 256²),
    4 for other backbones."""
    max_width: int | None = 64
    """The unet's channels stop doubling at this many (null: width * 2**depth): the deep stages
    are small maps, so capped they add receptive field at little cost."""
    init_from: str | None = None
    """Initialise the weights (only) from a checkpoint path or
    `wandb:<entity>/<project>/<name>:<alias>`; every other setting still comes from this config."""
    init_artifact: str | None = None
    """The wandb artifact `init_from` came from, declared as the run's input for lineage
    (default for a path: `<run name>-model`, the artifact `kp train` logs)."""
    loss: Literal["bce", "focal", "mse"] = "focal"
    head_prior: float = 0.01
    """Initial heatmap probability everywhere: the head's bias is log(p / (1 - p))."""
    head_width: int = 32
    """Channels of the head's hidden 3×3 conv (at least the backbone's output channels)."""
    coord_channels: bool = True
    """Give the head two coordinate maps (where in the frame a feature is): tells look-alike
    keypoints apart by position where the camera is fixed (`models/head.py`)."""
    freeze_encoder_epochs: int = 0
    """Train only the decoder and head for this many epochs first (fine-tuning from
    `init_from`); 0 trains everything from the start."""
    freeze_bn_stats: bool = False
    """Keep BatchNorm running statistics as loaded (fine-tuning on a few images, whose batch
    statistics are a poor estimate); the BatchNorm scales and shifts still train."""

    def checks(self) -> Checks:
        return {
            "width": (self.width >= 1, "must be >= 1"),
            "depth": (self.depth == AUTO or self.depth >= 1, "must be >= 1 or auto"),
            "max_width": (self.max_width is None or self.max_width >= self.width,
                          "must be >= model.width (or null)"),
            "head_prior": (0.0 < self.head_prior < 1.0, "must be in (0, 1)"),
            "head_width": (self.head_width >= 1, "must be >= 1"),
            "freeze_encoder_epochs": (self.freeze_encoder_epochs >= 0, "must be >= 0"),
        }


@dataclass
class HeatmapConfig:
    """Gaussian heatmap targets."""

    sigma: float = 2.0
    """Standard deviation in heatmap cells."""
    stride: int | Literal["auto"] = AUTO
    """Input pixels per heatmap cell: 1, 2, 4 or 8; `auto`: the largest that keeps the
    heatmap's shorter side at >= 128 cells (1 at 128² inputs, 2 at 256², 4 at 512²)."""

    def checks(self) -> Checks:
        return {
            "sigma": (self.sigma > 0, "must be > 0"),
            "stride": (self.stride in (1, 2, 4, 8, AUTO), "must be 1, 2, 4, 8 or auto"),
        }


@dataclass
class EvalConfig:
    """Keypoint extraction and the L2-distance metrics."""

    thresholds: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])
    """Distance thresholds in original-image pixels."""
    nms_radius: int = 2
    score_floor: float = 0.01
    """Validation (and `kp eval --checkpoint`) scores every NMS peak above this floor: AP
    ranks detections by score, so low-scored peaks only extend the precision/recall curve, and
    an early model whose peaks are all weak still gets an honest, non-zero AP."""
    score_threshold: float = 0.1
    """What `kp predict` and `Detector.predict` return: peaks above this score."""
    top_k: int = 20
    """Detections kept per channel and image; 0 keeps all."""
    matching: Literal["first", "nearest"] = "first"
    """`first`: the seed framework's first-unmatched-in-list rule; `nearest`: nearest unmatched."""
    eval_every: int | Literal["auto"] = AUTO
    """Compute the keypoint metrics every N epochs (the last epoch is always evaluated);
    `auto`: about 20 evaluations per run."""
    top1_channels: list[str] | Literal["auto"] = AUTO
    """Channels also scored by top-1 pixel error, PCK and swap rate (their best peak per image,
    as DeepLabCut and Lightning Pose users measure): a list of channel names, or `auto`: the
    channels with at most one labelled keypoint in every training image. Their predictions
    (`kp predict`, `Detector.predict`) are that one best peak."""
    pose_prior: bool = True
    """Choose each top-1 channel's point among its peaks with a pose prior fitted to the
    training labels (where it should lie given the other top-1 points; `heatmaps/pose_prior.py`)
    instead of taking its best peak: look-alike keypoints (left and right paws) are told apart
    by the rest of the pose. Applies where at least two top-1 channels are labelled; stored in
    the checkpoint; `kp export`'s graphs take the best peak."""
    precise_bn: bool = True
    """Before each evaluation, re-estimate BatchNorm statistics with the current weights from
    the latest 64 training images instead of evaluating with the running averages of past
    steps, which lag the weights early in training (`training/precise_bn.py`). Off where
    `model.freeze_bn_stats` keeps the loaded statistics."""
    best_by: Literal["auto", "map", "mean_px_error"] = AUTO
    """What `best.ckpt` keeps: the highest `val/map` or the lowest `val/mean_px_error`; `auto`:
    the error when every channel is a top-1 channel, else the AP."""
    keep: Literal["auto", "best", "final"] = AUTO
    """Which weights `best.ckpt` holds: `best`, the best evaluation by `best_by`; `final`, the
    latest evaluation's (the last epoch is always evaluated); `auto`: `final` where the
    validation set has fewer than 100 images, too few to rank checkpoints by."""

    def checks(self) -> Checks:
        return {
            "thresholds": (
                len(self.thresholds) > 0 and all(t > 0 for t in self.thresholds),
                "must be a non-empty list of positive distances",
            ),
            "nms_radius": (self.nms_radius >= 0, "must be >= 0"),
            "score_floor": (0.0 <= self.score_floor < 1.0, "must be in [0, 1)"),
            "score_threshold": (0.0 <= self.score_threshold < 1.0, "must be in [0, 1)"),
            "top_k": (self.top_k >= 0, "must be >= 0 (0 keeps all)"),
            "eval_every": (self.eval_every == AUTO or self.eval_every >= 1,
                           "must be >= 1 or auto"),
        }


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: Literal["none", "cosine", "step", "plateau"] = "cosine"
    warmup_epochs: int = 0

    def checks(self) -> Checks:
        return {
            "lr": (self.lr > 0, "must be > 0"),
            "weight_decay": (self.weight_decay >= 0, "must be >= 0"),
            "warmup_epochs": (self.warmup_epochs >= 0, "must be >= 0"),
        }


@dataclass
class TrainerConfig:
    """What is handed to Lightning's Trainer, plus the run's name and seed."""

    max_epochs: int | Literal["auto"] = AUTO
    """`auto`: enough epochs for about `TARGET_STEPS` optimiser steps (config/auto.py), at least
    20: small data sets need many epochs, large ones few."""
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    precision: str = "32-true"
    run_root: str = "runs"
    name: str = "default"
    """The run directory is `run_root/name` (`name-2`, `name-3`, ... when it exists)."""
    early_stop_patience: int = 0
    """Stop after this many epochs without a better `val/loss`; 0 never stops early."""
    progress_bar: bool = True

    def checks(self) -> Checks:
        return {
            "max_epochs": (self.max_epochs == AUTO or self.max_epochs >= 1,
                           "must be >= 1 or auto"),
            "early_stop_patience": (self.early_stop_patience >= 0, "must be >= 0"),
        }


@dataclass
class WandbConfig:
    """Weights & Biases; offline unless a key is configured and mode says online."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "kp_platform"
    entity: str | None = None
    group: str | None = None


@dataclass
class LoggingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class Config:
    """The root of the tree."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
