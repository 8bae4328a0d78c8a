from __future__ import annotations

import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.heatmaps import encode_heatmaps
from kp_platform.models.module import KeypointModule


def _batch(batch_size: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(batch_size, 3, 16, 24, generator=gen),
        "target_xy": torch.rand(batch_size, 2, 3, 2, generator=gen) * 16,
        "target_mask": torch.rand(batch_size, 2, 3, generator=gen) > 0.3,
    }


def test_targets_reuse_a_buffer_without_leaking_old_keypoints():
    config = apply_overrides(load_config(), ["model.backbone=unet_tiny", "heatmap.sigma=1.5"])
    module = KeypointModule.from_config(config, ["a", "b"])
    first = module.targets(_batch(4, 0))
    second_batch = _batch(4, 1)
    second = module.targets(second_batch)
    assert second.data_ptr() == first.data_ptr()  # the same memory, refilled
    fresh = encode_heatmaps(second_batch["target_xy"], second_batch["target_mask"], 16, 24, 1.5)
    assert torch.equal(second, fresh)
    smaller = module.targets(_batch(2, 2))  # a last, smaller batch gets its own buffer
    assert smaller.shape[0] == 2
