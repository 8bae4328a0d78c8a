"""Using trained checkpoints: prediction, evaluation through the validation loop, export.

Checkpoints are always read with `weights_only=True`.
"""

from kp_platform.inference.detector import Detector, evaluate_checkpoint, load_module
from kp_platform.inference.export import FORMATS, HeatmapModel, export_model

__all__ = [
    "FORMATS",
    "Detector",
    "HeatmapModel",
    "evaluate_checkpoint",
    "export_model",
    "load_module",
]
