"""What prediction reads from a checkpoint's config, and where it runs.

`DecodeOptions.from_config` is the one place that turns config keys into peak-decoding options
for prediction and export, so a prediction threshold separate from validation's only changes here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from kp_platform.config import Config
from kp_platform.errors import InputError

ACCELERATORS = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
"""Lightning precision names accepted by prediction, evaluation and export."""
_AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass(frozen=True)
class DecodeOptions:
    """Keyword arguments of `decode_heatmaps` for prediction.

    Attributes:
        nms_radius: A peak suppresses everything within this many heatmap cells.
        score_threshold: Peaks must be strictly above it.
        top_k: Detections kept per channel and image; None keeps all.
        stride: Output stride of the heatmaps.
    """

    nms_radius: int
    score_threshold: float
    top_k: int | None
    stride: int

    @classmethod
    def from_config(cls, config: Config) -> DecodeOptions:
        return cls(
            nms_radius=config.eval.nms_radius,
            score_threshold=config.eval.score_threshold,
            top_k=config.eval.top_k or None,
            stride=config.heatmap.stride,
        )

    def as_kwargs(self) -> dict[str, int | float | None]:
        return {"nms_radius": self.nms_radius, "score_threshold": self.score_threshold,
                "top_k": self.top_k, "stride": self.stride}


def check_precision(precision: str) -> str:
    """Returns `precision` ("32" is "32-true").

    Raises:
        InputError: not one of PRECISIONS.
    """
    precision = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(precision,
                                                                           precision)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose from {PRECISIONS}",
                         "--precision")
    return precision


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context of `precision` on `device` (a no-op for 32-true)."""
    dtype = _AUTOCAST.get(check_precision(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def trainer_accelerator(accelerator: str) -> str:
    """The Lightning accelerator name of a `--accelerator` value (checked as resolve_device)."""
    return resolve_device(accelerator).type


def resolve_device(accelerator: str = "auto") -> torch.device:
    """The device prediction runs on.

    Args:
        accelerator: auto (CUDA when present, else MPS, else CPU), cpu, cuda or mps.

    Raises:
        InputError: an unknown accelerator, or one that is not available.
    """
    if accelerator not in ACCELERATORS:
        raise InputError(f"unknown accelerator {accelerator!r}; choose from {ACCELERATORS}",
                         "--accelerator")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", "--accelerator")
    if accelerator == "mps" and not has_mps:
        raise InputError("MPS is not available on this machine", "--accelerator")
    return torch.device(accelerator)
