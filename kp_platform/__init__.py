"""kp_platform: heatmap keypoint detection, L2-distance AP, sweeps and pipelines.

Sub-packages: config, data, heatmaps, metrics, cli (see README "Architecture").
"""

__version__ = "0.1.0"
