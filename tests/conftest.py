"""Shared fixtures: tiny COCO datasets written to tmp_path, the quokka photo, and a `kp` runner."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kp_platform.cli.main import main as kp_main
from kp_platform.config import apply_overrides, load_config
from kp_platform.data.quads import generate_quads
from kp_platform.data.synth import generate_dataset
from kp_platform.training import train

TOWEL = {"id": 1, "name": "towel", "keypoints": ["corner0", "corner1", "grasp"]}
SHIRT = {"id": 2, "name": "shirt", "keypoints": ["sleeve_left", "sleeve_right", "grasp"]}


def write_coco(
    root: Path,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]] | None = None,
    write_images: bool = True,
    name: str = "annotations.json",
) -> Path:
    """Writes a COCO JSON plus (by default) a random RGB PNG per image of the JSON's size."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if write_images:
        for image in images:
            path = root / image["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
    data = {
        "images": images,
        "annotations": annotations,
        "categories": categories if categories is not None else [TOWEL, SHIRT],
    }
    path = root / name
    path.write_text(json.dumps(data))
    return path


def image(image_id: int, width: int = 32, height: int = 24) -> dict[str, Any]:
    return {"id": image_id, "file_name": f"images/{image_id:03d}.png", "width": width,
            "height": height}


def annotation(ann_id: int, image_id: int, category_id: int, keypoints: list[float]):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "keypoints": keypoints, "num_keypoints": len(keypoints) // 3}


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """Three 32x24 images: two towels + a shirt, one negative image, dropped keypoints."""
    images = [image(1), image(2), image(3)]
    annotations = [
        # towel: corner0 visible, corner1 occluded (v=1), grasp not labelled (v=0)
        annotation(10, 1, 1, [3.25, 4.5, 2, 20.75, 5.0, 1, 0, 0, 0]),
        # shirt: sleeves and grasp; grasp lies outside the image (x == width)
        annotation(11, 1, 2, [5.0, 10.0, 2, 25.0, 10.5, 2, 32.0, 3.0, 2]),
        # second towel on image 2
        annotation(12, 2, 1, [1.0, 1.0, 2, 30.5, 22.5, 2, 15.0, 12.0, 2]),
    ]
    return write_coco(tmp_path / "tiny", images, annotations)


@pytest.fixture
def run_kp(capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """Runs `kp` in-process; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = kp_main([str(a) for a in argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def imgaug_package_dir() -> Path:
    """The imgaug package folder, found without importing imgaug (its code is never run)."""
    import importlib.util

    spec = importlib.util.find_spec("imgaug")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("imgaug is not installed: `make test` installs it (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def quokka_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """imgaug's quokka photo and its 7 keypoints (left/right pairs) as a one-image COCO set."""
    package = imgaug_package_dir()
    root = tmp_path_factory.mktemp("quokka")
    photo = Image.open(package / "quokka.jpg")
    (root / "images").mkdir()
    photo.save(root / "images" / "quokka.png")
    labels = json.loads((package / "quokka_annotations.json").read_text())["keypoints"]
    names = [kp["label"] for kp in labels]
    values: list[float] = []
    for kp in labels:
        values += [float(kp["x"]), float(kp["y"]), 2]
    data = {
        "images": [{"id": 1, "file_name": "images/quokka.png", "width": photo.width,
                    "height": photo.height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": values,
                         "num_keypoints": len(names)}],
        "categories": [{"id": 1, "name": "quokka", "keypoints": names}],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


# --- a tiny synthetic dataset and one trained run, shared by training and inference tests

CHANNELS = "towel.corner0=towel.corner1=towel.corner2=towel.corner3:towel.grasp"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {
        "train": generate_dataset(root / "train", "synthetic", 24, 32, seed=0, workers=1),
        "val": generate_dataset(root / "val", "synthetic", 8, 32, seed=1, workers=1),
    }


def tiny_config(synth_data: dict[str, Path], run_root: Path, *overrides: str):
    """unet_tiny on 32x32 images, wandb offline, no progress bar."""
    base = [
        f"data.train={synth_data['train']}",
        f"data.val={synth_data['val']}",
        f"data.channels={CHANNELS}",
        "data.input_size=[32, 32]",
        "data.batch_size=8",
        "model.backbone=unet_tiny",
        "trainer.max_epochs=2",
        f"trainer.run_root={run_root}",
        "trainer.progress_bar=false",
        "trainer.accelerator=cpu",
        "logging.wandb.mode=offline",
        # near the head prior, so even a barely trained net detects (non-zero, testable AP)
        "eval.score_floor=0.001",
    ]
    return apply_overrides(load_config(), base + list(overrides))


@pytest.fixture(scope="session")
def trained_run(synth_data, tmp_path_factory):
    """One finished 2-epoch run (AP every epoch)."""
    run_root = tmp_path_factory.mktemp("runs")
    return train(tiny_config(synth_data, run_root, "trainer.name=shared"))


@pytest.fixture(scope="session")
def single_instance_run(tmp_path_factory):
    """3 epochs on quads with one quad per image: 4 single-instance channels."""
    root = tmp_path_factory.mktemp("single")
    train_json = generate_quads(root / "train", 16, 32, seed=0, max_quads=1)
    val_json = generate_quads(root / "val", 6, 32, seed=1, max_quads=1)
    config = apply_overrides(load_config(), [
        f"data.train={train_json}", f"data.val={val_json}", "data.input_size=[32, 32]",
        "model.backbone=unet_tiny", "trainer.max_epochs=3", f"trainer.run_root={root}",
        "trainer.name=single", "eval.keep=best", "logging.wandb.mode=disabled",
        "trainer.progress_bar=false"])
    return train(config)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """The one Ray of the test session (2 CPUs, small object store, its own temp dir).

    It advertises one GPU of type T4 that the machine need not have: Ray only counts GPUs, so
    trials asking for fractions of it show how Ray packs them (tests/tune/test_gpu_trials.py),
    while every trial's config trains on the CPU.
    """
    import ray

    # A short path of its own: Ray's socket paths must stay under 107 characters, and a killed
    # head's leftovers must not reach other sessions.
    temp_dir = tempfile.mkdtemp(prefix="kpray-", dir="/tmp")
    ray.init(num_cpus=2, num_gpus=1, resources={"accelerator_type:T4": 1},
             include_dashboard=False, object_store_memory=300 * 1024 * 1024,
             _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
