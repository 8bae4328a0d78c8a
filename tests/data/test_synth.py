"""Tests of the synthetic COCO keypoint dataset generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from kp_platform.data.synth import CATEGORIES, DOMAINS, generate_dataset


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dataset30(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """30 synthetic 64x64 images: enough for negatives, occlusions and cut-off keypoints."""
    out = tmp_path_factory.mktemp("synth30")
    path = generate_dataset(out, "synthetic", num_images=30, image_size=64, seed=0, workers=2)
    return path, _load(path)


@pytest.mark.parametrize("domain", DOMAINS)
def test_same_arguments_give_identical_bytes_whatever_the_workers(
    tmp_path: Path, domain: str
) -> None:
    a = generate_dataset(tmp_path / "a", domain, 12, 48, seed=5, workers=1)
    b = generate_dataset(tmp_path / "b", domain, 12, 48, seed=5, workers=2)
    files_a, files_b = _files(a.parent), _files(b.parent)
    assert len(files_a) == 13  # 12 images and the JSON
    assert files_a == files_b


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", "synthetic", 6, 48, seed=1, workers=1)
    b = generate_dataset(tmp_path / "b", "synthetic", 6, 48, seed=2, workers=1)
    assert a.read_bytes() != b.read_bytes()
    images_a = [p.read_bytes() for p in sorted((a.parent / "images").iterdir())]
    images_b = [p.read_bytes() for p in sorted((b.parent / "images").iterdir())]
    assert all(x != y for x, y in zip(images_a, images_b, strict=True))


def test_json_is_valid_coco_keypoints(dataset30: tuple[Path, dict[str, Any]]) -> None:
    path, data = dataset30
    assert path.name == "annotations.json"
    assert data["info"]["generator"] == "kp_platform.data.synth"
    assert data["info"]["domain"] == "synthetic" and data["info"]["seed"] == 0
    assert data["categories"] == CATEGORIES
    assert [c["name"] for c in data["categories"]] == ["towel", "shirt"]

    images = {im["id"]: im for im in data["images"]}
    assert sorted(images) == list(range(1, 31))
    for im in data["images"]:
        assert im["file_name"].startswith("images/") and im["file_name"].endswith(".png")
        with Image.open(path.parent / im["file_name"]) as pil:
            assert pil.size == (im["width"], im["height"]) == (64, 64)

    n_kps = {c["id"]: len(c["keypoints"]) for c in data["categories"]}
    ids = [a["id"] for a in data["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    for ann in data["annotations"]:
        assert ann["image_id"] in images
        assert len(ann["keypoints"]) == 3 * n_kps[ann["category_id"]]
        assert all(isinstance(v, float) for v in ann["keypoints"])
        assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
        assert set(ann["keypoints"][2::3]) <= {0.0, 1.0, 2.0}
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 64 and y + h <= 64
        assert ann["area"] > 0 and ann["iscrowd"] == 0

    kps = np.array([k for a in data["annotations"] for k in a["keypoints"]]).reshape(-1, 3)
    assert np.any(kps[:, :2] != np.round(kps[:, :2])), "coordinates should be sub-pixel"
    assert np.any(kps[:, 2] == 1), "some keypoints should be occluded (v=1)"
    assert np.any(kps[:, 2] == 2)
    # Valid COCO: a keypoint with v > 0 lies in the image; cut-off ones are 0, 0, 0 (COCO's
    # "not labelled"), still counted in the summary.
    outside = (kps[:, 0] < 0) | (kps[:, 1] < 0) | (kps[:, 0] >= 64) | (kps[:, 1] >= 64)
    assert not outside.any()
    unlabelled = kps[kps[:, 2] == 0]
    assert len(unlabelled) > 0 and not unlabelled.any(), "cut-off keypoints are 0, 0, 0"
    assert data["info"]["keypoints"] == {
        "visible": int(np.sum(kps[:, 2] == 2)), "occluded": int(np.sum(kps[:, 2] == 1)),
        "outside_image": len(unlabelled),
    }
    annotated = {a["image_id"] for a in data["annotations"]}
    assert len(annotated) < 30, "some images should be negatives"
    assert {a["category_id"] for a in data["annotations"]} == {1, 2}


def test_pycocotools_loads_it(dataset30: tuple[Path, dict[str, Any]]) -> None:
    coco_module = pytest.importorskip("pycocotools.coco")
    coco = coco_module.COCO(str(dataset30[0]))
    assert len(coco.getImgIds()) == 30
    assert coco.loadCats(2)[0]["keypoints"][1] == "sleeve_left"


def test_left_is_on_the_image_left_and_corners_run_clockwise(
    dataset30: tuple[Path, dict[str, Any]],
) -> None:
    # A horizontal flip must swap the semantics, so the orientation has to be consistent.
    checked = 0
    for ann in dataset30[1]["annotations"]:
        values = np.array(ann["keypoints"]).reshape(-1, 3)
        k, labelled = values[:, :2], values[:, 2] > 0  # cut-off keypoints are 0, 0, 0
        if ann["category_id"] == 2:
            if labelled[1] and labelled[2]:
                assert k[1, 0] < k[2, 0]  # sleeve_left left of sleeve_right
            if labelled[3] and labelled[4]:
                assert k[3, 0] < k[4, 0]  # hem_left left of hem_right
        elif labelled[:4].all():
            checked += 1
            x, y = k[:4, 0], k[:4, 1]
            # Shoelace area is positive for clockwise order when y points down.
            assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
    assert checked > 0


def _high_frequency_energy(path: Path) -> float:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())


def test_real_domain_is_jpeg_and_statistically_different(tmp_path: Path) -> None:
    synth = generate_dataset(tmp_path / "s", "synthetic", 10, 64, seed=3, workers=1)
    real = generate_dataset(tmp_path / "r", "real", 10, 64, seed=3, workers=1)
    real_data = _load(real)
    assert real_data["info"]["domain"] == "real"
    for im in real_data["images"]:
        assert im["file_name"].endswith(".jpg")
        with Image.open(real.parent / im["file_name"]) as pil:
            assert pil.format == "JPEG" and pil.mode == "RGB"
    assert all(im["file_name"].endswith(".png") for im in _load(synth)["images"])
    # Both render textured cloth through the same camera; the photo backgrounds (and JPEG
    # blocks) of the real domain carry more fine detail than the procedural ones.
    hf_synth = np.mean([_high_frequency_energy(p) for p in (synth.parent / "images").iterdir()])
    hf_real = np.mean([_high_frequency_energy(p) for p in (real.parent / "images").iterdir()])
    assert hf_real > 1.25 * hf_synth, (hf_real, hf_synth)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "photo"}, "unknown domain"),
        ({"num_images": 0}, "num_images"),
        ({"image_size": 31}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"domain": "synthetic", "num_images": 2, "image_size": 32, "seed": 0}
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, **{**args, **kwargs})
    assert not (tmp_path / "annotations.json").exists()


def test_synth_command_counts_cut_off_keypoints(tmp_path: Path, run_kp) -> None:
    code, out, err = run_kp("data", "synth", tmp_path / "d", "--num-images", "6",
                            "--image-size", "32", "--workers", "1")
    assert code == 0, err
    counts = json.loads((tmp_path / "d" / "annotations.json").read_text())["info"]["keypoints"]
    assert counts["outside_image"] > 0
    assert f"{counts['outside_image']} outside the image (written as 0, 0, 0)" in out
