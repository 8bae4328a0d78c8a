"""Keypoint metrics: L2-distance AP (the seed framework's semantics), PCK, distance statistics.

`KeypointAP` for validation loops (tensor state, DDP-safe); `evaluate_predictions` for files.
"""

from kp_platform.metrics.average_precision import (
    KeypointAP,
    compute_keypoint_metrics,
    threshold_key,
)
from kp_platform.metrics.predictions import (
    evaluate_predictions,
    parse_predictions,
    read_predictions,
)

__all__ = [
    "KeypointAP",
    "compute_keypoint_metrics",
    "evaluate_predictions",
    "parse_predictions",
    "read_predictions",
    "threshold_key",
]
