"""Keypoint metrics: L2-distance AP (the seed framework's semantics), PCK, distance statistics,
and the top-1 pixel error, PCK and swap rate of single-instance channels.

`KeypointAP` and `Top1Error` for validation loops (tensor state, DDP-safe);
`evaluate_predictions` for files; `format_metrics` prints either as tables.
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
from kp_platform.metrics.tables import format_metrics, format_top1
from kp_platform.metrics.top1 import Top1Error, top1_pairs, top1_summary

__all__ = [
    "KeypointAP",
    "compute_keypoint_metrics",
    "evaluate_predictions",
    "format_metrics",
    "format_top1",
    "parse_predictions",
    "read_predictions",
    "Top1Error",
    "threshold_key",
    "top1_pairs",
    "top1_summary",
]
