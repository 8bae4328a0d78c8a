"""Look-alike keypoints: a trained model tells them apart by context, and does not swap them.

Each tiny image holds two identical white discs and a small red square beside one of them.
Channel `near` is the disc beside the square, `far` the other: the discs alone look the same,
so only the context (where the square is) says which is which, as only the body says which paw
is the left one. The positions are random, so the position in the frame says nothing either.

The control exchanges `near` and `far` at random in half of the training images: no context
predicts such labels, the model must guess, and the same check fails (half the peaks swapped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kp_platform.config import apply_overrides, load_config
from kp_platform.data.datamodule import KeypointDataModule
from kp_platform.models.losses import heatmap_loss
from kp_platform.models.module import KeypointModule
from tests.conftest import write_coco

SIZE, RADIUS = 48, 3
CATEGORY = {"id": 1, "name": "twins", "keypoints": ["near", "far"]}
STEPS = 300


def twins(root: Path, count: int, seed: int, exchange: float = 0.0) -> Path:
    """Writes `count` images with their `near`/`far` labels; `exchange`: the share of images
    whose two labels are exchanged."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    root.mkdir(parents=True, exist_ok=True)
    from PIL import Image, ImageDraw

    for i in range(1, count + 1):
        while True:  # two discs far enough apart, inside the image with their squares
            a, b = rng.uniform(8, SIZE - 9, (2, 2))
            if np.linalg.norm(a - b) > 16:
                break
        angle = rng.uniform(0, 2 * np.pi)
        marker = np.clip(a + 7 * np.array([np.cos(angle), np.sin(angle)]), 2, SIZE - 3)
        canvas = Image.new("RGB", (SIZE, SIZE), (60, 60, 60))
        draw = ImageDraw.Draw(canvas)
        for x, y in (a, b):
            draw.ellipse([x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS], fill=(255, 255, 255))
        draw.rectangle([marker[0] - 1.5, marker[1] - 1.5, marker[0] + 1.5, marker[1] + 1.5],
                       fill=(230, 30, 30))
        name = f"images/{i:03d}.png"
        (root / "images").mkdir(exist_ok=True)
        canvas.save(root / name)
        near, far = (b, a) if rng.random() < exchange else (a, b)
        images.append({"id": i, "file_name": name, "width": SIZE, "height": SIZE})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "num_keypoints": 2,
                            "keypoints": [*near, 2, *far, 2]})
    return write_coco(root, images, annotations, [CATEGORY], write_images=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("twins")
    return {"train": twins(root / "train", 48, seed=1),
            "exchanged": twins(root / "exchanged", 48, seed=1, exchange=0.5),
            "held_out": twins(root / "held_out", 24, seed=2)}


def swap_rate_after_training(train: Path, held_out: Path) -> float:
    """Trains the U-Net on `train` for STEPS steps; the top-1 swap rate on `held_out`."""
    torch.manual_seed(0)
    config = apply_overrides(load_config(), [
        f"data.train={train}", f"data.val={held_out}", f"data.input_size=[{SIZE},{SIZE}]",
        "data.batch_size=8", "eval.thresholds=[3]", "eval.top1_channels=[near,far]",
        "model.width=8", "model.depth=3", f"trainer.max_epochs={STEPS}", "data.augment=[]",
    ])
    data = KeypointDataModule(config.data, seed=0)
    module = KeypointModule.from_config(config, list(data.channels.names))
    optimizer = module.configure_optimizers()["optimizer"]
    batches = [data.on_after_batch_transfer(b, 0) for b in data.train_dataloader()]
    module.train()
    for step in range(STEPS):
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
            module.top1.update(detections.xy, detections.valid, batch["gt_xy"],
                               batch["gt_mask"], batch["orig_size"])
    return module.top1.compute()["overall"]["swap_rate"]


def test_look_alike_keypoints_are_told_apart_by_context(sets: dict[str, Path]) -> None:
    assert swap_rate_after_training(sets["train"], sets["held_out"]) <= 0.1


def test_the_check_fails_when_labels_are_exchanged_at_random(sets: dict[str, Path]) -> None:
    # The same training with near/far exchanged in half the images: nothing to learn from.
    assert swap_rate_after_training(sets["exchanged"], sets["held_out"]) >= 0.3
