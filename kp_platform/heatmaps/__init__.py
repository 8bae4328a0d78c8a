"""Heatmaps on the device: batched ground-truth encoding and batched peak decoding.

Sub-pixel Gaussians in, sub-pixel detections out, in the project's pixel-centre convention.
"""

from kp_platform.heatmaps.decode import Detections, decode_heatmaps
from kp_platform.heatmaps.encode import encode_heatmaps, heatmap_size

__all__ = ["Detections", "decode_heatmaps", "encode_heatmaps", "heatmap_size"]
