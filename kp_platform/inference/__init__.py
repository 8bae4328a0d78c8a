"""Using trained checkpoints: prediction on images, folders and videos, rendering, evaluation
through the validation loop, export. Checkpoints are always read with `weights_only=True`.
"""

from kp_platform.inference.detector import Detector, evaluate_checkpoint, load_module
from kp_platform.inference.export import FORMATS, HeatmapModel, export_model
from kp_platform.inference.grid import render_prediction_grid
from kp_platform.inference.settings import DecodeOptions, resolve_device
from kp_platform.inference.stream import predict_inputs

__all__ = [
    "FORMATS",
    "DecodeOptions",
    "Detector",
    "HeatmapModel",
    "evaluate_checkpoint",
    "export_model",
    "load_module",
    "predict_inputs",
    "render_prediction_grid",
    "resolve_device",
]
