"""The network: a backbone from the registry (from scratch or `timm:<encoder>`), a heatmap head,
and the heatmap losses.
"""

from kp_platform.models.backbones import (
    build_backbone,
    create_backbone,
    list_backbones,
    load_weights,
    register_backbone,
)
from kp_platform.models.head import HeatmapHead
from kp_platform.models.losses import LOSS_KINDS, heatmap_loss
from kp_platform.models.network import KeypointNet, build_network
from kp_platform.models.seed_unet import SeedUNet  # registers `seed_unet`

__all__ = [
    "LOSS_KINDS",
    "HeatmapHead",
    "KeypointNet",
    "SeedUNet",
    "build_backbone",
    "build_network",
    "create_backbone",
    "heatmap_loss",
    "list_backbones",
    "load_weights",
    "register_backbone",
]
