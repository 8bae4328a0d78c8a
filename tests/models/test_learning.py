"""Every backbone family learns: it overfits a few tiny images, and shuffled labels teach nothing.

A plain loop over the production pieces (datamodule, `KeypointModule` targets, loss, decoding
and AP, the default optimiser) without Lightning's per-epoch overhead, on the quads data.

Overfitting alone cannot tell learning from memorising: these networks fit two images' labels
even when the labels belong to other images. So the control trains on 24 images whose labels
were moved to other images and evaluates on 8 held-out images with their true labels: what
the pixels explain carries over to new images, memorised positions do not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.data.datamodule import KeypointDataModule
from kp_platform.data.quads import CHANNELS, generate_quads
from kp_platform.models.losses import heatmap_loss
from kp_platform.models.module import KeypointModule

# (backbone, extra overrides, steps to overfit): one per family, each taking seconds.
FAMILIES = [
    ("unet_tiny", [], 100),
    ("dilated_cnn_tiny", [], 100),
    ("seed_unet", [], 100),
    ("timm:resnet10t", ["model.width=8"], 60),
]
CONTROL_STEPS = 100


@pytest.fixture(scope="module")
def quads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quads")
    sets = {
        "few": generate_quads(root / "few", num_images=2, image_size=48, seed=3, max_quads=2),
        "train": generate_quads(root / "train", num_images=24, image_size=48, seed=5,
                                max_quads=2),
        "held_out": generate_quads(root / "held_out", num_images=8, image_size=48, seed=6,
                                   max_quads=2),
    }
    data = json.loads(sets["train"].read_text())
    for ann in data["annotations"]:  # every image's quads onto the next image
        ann["image_id"] = ann["image_id"] % len(data["images"]) + 1
    sets["shuffled"] = root / "train" / "shuffled.json"
    sets["shuffled"].write_text(json.dumps(data))
    return sets


def train_and_score(train: Path, val: Path, backbone: str, overrides: list[str],
                    steps: int) -> float:
    """Trains on `train` for `steps` optimiser steps; mean AP@4 on `val`."""
    torch.manual_seed(0)
    config = apply_overrides(load_config(), [
        f"data.train={train}", f"data.val={val}", f"data.channels={CHANNELS}",
        "data.input_size=[48,48]", "data.batch_size=8", "eval.thresholds=[4]",
        f"model.backbone={backbone}", f"trainer.max_epochs={steps}",
        "data.augment=[]",  # memorising and its control: the images exactly as labelled
        *overrides,
    ])
    data = KeypointDataModule(config.data, seed=0)
    module = KeypointModule.from_config(config, list(data.channels.names))
    optimizer = module.configure_optimizers()["optimizer"]
    # What Lightning does after moving each batch: uint8 images to float on the device.
    batches = [data.on_after_batch_transfer(b, 0) for b in data.train_dataloader()]
    module.train()
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss, _ = heatmap_loss(module(batch["image"]), module.targets(batch),
                               module.cfg.model.loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = data.on_after_batch_transfer(batch, 0)
            detections = module.decode(module(batch["image"])).to_original(batch["affine"])
            module.metric.update(detections.xy, detections.scores, detections.valid,
                                 batch["gt_xy"], batch["gt_mask"])
    return float(module.metric.compute()["mean_ap"]["4"])


@pytest.mark.parametrize("backbone, overrides, steps", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_backbone_family_overfits_a_few_images(
    quads: dict[str, Path], backbone: str, overrides: list[str], steps: int
) -> None:
    assert train_and_score(quads["few"], quads["few"], backbone, overrides, steps) >= 0.9


@pytest.mark.parametrize("backbone, overrides, steps", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_shuffled_labels_teach_nothing_that_carries_to_new_images(
    quads: dict[str, Path], backbone: str, overrides: list[str], steps: int
) -> None:
    true_labels = train_and_score(quads["train"], quads["held_out"], backbone, overrides,
                                  CONTROL_STEPS)
    shuffled = train_and_score(quads["shuffled"], quads["held_out"], backbone, overrides,
                               CONTROL_STEPS)
    # Far below the 0.9 that learning reaches: what moved labels leave is a prior of where
    # quad corners tend to be (measured 0.02-0.07 from scratch, 0.13 for resnet10t, whose true
    # labels reach 0.33 in the same steps).
    assert shuffled <= 0.2
    assert true_labels >= shuffled + 0.12
