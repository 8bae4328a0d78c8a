from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kp_platform.data import CocoKeypoints, parse_channels, resolve_channels
from kp_platform.errors import InputError
from tests.conftest import annotation, image, write_coco


def test_keypoints_gathered_per_channel_in_annotation_then_channel_order(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    specs = parse_channels(
        [
            {"name": "grasp", "keypoints": ["towel.grasp", "shirt.grasp"]},
            {"name": "tips", "keypoints": ["towel.corner1", "towel.corner0", "sleeve_left"]},
            {"name": "corner0", "keypoints": ["corner0"]},  # corner0 feeds two channels
        ]
    )
    channels = resolve_channels(specs, coco.categories, "test")
    first = coco.image_keypoints(1, channels)
    # towel grasp is v=0 (dropped), shirt grasp sits at x == width (outside, dropped)
    assert first.points[0].shape == (0, 2)
    assert first.dropped[0]["not_labelled"] == 1 and first.dropped[0]["outside_image"] == 1
    # annotation order (towel, then shirt), then the channel's keypoint order
    np.testing.assert_array_equal(first.points[1], [[20.75, 5.0], [3.25, 4.5], [5.0, 10.0]])
    np.testing.assert_array_equal(first.points[2], [[3.25, 4.5]])
    second = coco.image_keypoints(2, channels)
    np.testing.assert_array_equal(second.points[0], [[15.0, 12.0]])
    # negative image kept, empty everywhere
    assert [len(p) for p in coco.image_keypoints(3, channels).points] == [0, 0, 0]


def test_visible_only_drops_occluded(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    channels = resolve_channels(parse_channels("corner1"), coco.categories, "test")
    assert len(coco.image_keypoints(1, channels).points[0]) == 1
    hidden = coco.image_keypoints(1, channels, visible_only=True)
    assert len(hidden.points[0]) == 0 and hidden.dropped[0]["occluded"] == 1


@pytest.mark.parametrize(
    "x, y, kept",
    [(0.0, 0.0, True), (31.99, 23.99, True), (-0.01, 5, False), (32.0, 5, False),
     (5, 24.0, False), (5, -1, False)],
)
def test_bounds_are_half_open(tmp_path, x, y, kept):
    path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, [x, y, 2, 1, 1, 0, 1, 1, 0])])
    coco = CocoKeypoints.load(path)
    channels = resolve_channels(parse_channels("towel.corner0"), coco.categories, "t")
    assert len(coco.image_keypoints(1, channels).points[0]) == int(kept)


# One case per kind of bad input: the CLI must print one line naming the file and the item.
def _bad_inputs():
    good_ann = annotation(7, 1, 1, [1, 1, 2, 2, 2, 2, 3, 3, 2])
    return {
        "invalid_json": (None, "invalid JSON at line 1"),
        "missing_keys": ({"images": [image(1)]}, "missing top-level key(s) ['annotations', "),
        "keypoint_length": (
            {"annotations": [annotation(5, 1, 1, [1, 1, 2, 2, 2, 2])]},
            "annotation 5: 'keypoints' has 6 values, expected 9",
        ),
        "nan": (
            {"annotations": [annotation(6, 1, 1, [1, float("nan"), 2, 2, 2, 2, 3, 3, 2])]},
            "annotation 6: keypoint 'corner0' has NaN/infinite values",
        ),
        "infinite": (
            {"annotations": [annotation(6, 1, 1, [1, 1, 2, float("inf"), 2, 2, 3, 3, 2])]},
            "annotation 6: keypoint 'corner1' has NaN/infinite values",
        ),
        "missing_image": ({"images": [image(1), image(9)]}, "image 9: file 'images/009.png' not"),
        "wrong_size": ({"images": [image(1, width=40)]}, "image 1: 'images/001.png' is 32x24"),
        "duplicate_ids": ({"images": [image(1), image(1)]}, "image 1: duplicate image id"),
        "unknown_image": (
            {"annotations": [good_ann, annotation(8, 42, 1, [1, 1, 2] * 3)]},
            "annotation 8: unknown image id 42",
        ),
        "unknown_category": (
            {"annotations": [annotation(9, 1, 5, [1, 1, 2] * 3)]},
            "annotation 9: unknown category id 5",
        ),
        "no_images": ({"images": [], "annotations": []}, "the dataset has no images"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_dataset_gives_one_line_error_and_status_2(tmp_path, run_kp, case):
    change, expected = _bad_inputs()[case]
    path = write_coco(tmp_path, [image(1)], [annotation(7, 1, 1, [1, 1, 2, 2, 2, 2, 3, 3, 2])])
    if change is None:
        path.write_text('{"images": [}')
    else:
        data = json.loads(path.read_text())
        if case == "missing_keys":
            data = change
        else:
            data.update(change)
        path.write_text(json.dumps(data))
    code, out, err = run_kp("data", "check", path)
    assert code == 2
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err


def test_unreadable_image_file(tmp_path, run_kp):
    path = write_coco(tmp_path, [image(1)], [])
    (tmp_path / "images" / "001.png").write_bytes(b"not a png")
    code, _, err = run_kp("data", "check", path)
    assert code == 2 and "image 1: cannot read 'images/001.png'" in err


def test_unknown_channel_keypoint(tiny_coco, run_kp):
    code, _, err = run_kp("data", "check", tiny_coco, "--channels", "corner0:elbow")
    assert code == 2
    assert "channel 'elbow': unknown keypoint 'elbow'" in err and str(tiny_coco) in err


def test_ambiguous_bare_keypoint(tiny_coco, run_kp):
    code, _, err = run_kp("data", "check", tiny_coco, "--channels", "grasp")
    assert code == 2 and "'grasp' is ambiguous; write one of towel.grasp, shirt.grasp" in err


def test_grayscale_rgba_and_16bit_images_load_as_rgb(tmp_path):
    from kp_platform.data import read_rgb

    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.full((24, 32, 4), 200, np.uint8)).save(tmp_path / "rgba.png")
    deep = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    for name in ("gray", "rgba", "deep"):
        rgb = read_rgb(tmp_path / f"{name}.png")
        assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8, name
    np.testing.assert_array_equal(read_rgb(tmp_path / "gray.png")[..., 1], gray)
    np.testing.assert_array_equal(read_rgb(tmp_path / "deep.png")[..., 0], deep >> 8)
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), 200)


# --- image paths must stay inside the dataset's folder


def _escaping_dataset(tmp_path, how: str):
    """A dataset in tmp_path/ds whose image 2 names a readable PNG outside its folder."""
    secret = tmp_path / "secret" / "private.png"
    secret.parent.mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(secret)
    root = tmp_path / "ds"
    path = write_coco(root, [image(1)], [])
    if how == "dotdot":
        file_name = "../secret/private.png"
    elif how == "absolute":
        file_name = str(secret)
    else:  # a symlink inside the folder that points out of it
        (root / "images" / "link.png").symlink_to(secret)
        file_name = "images/link.png"
    data = json.loads(path.read_text())
    data["images"].append({"id": 2, "file_name": file_name, "width": 32, "height": 24})
    path.write_text(json.dumps(data))
    return path, file_name


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_file_name_outside_the_dataset_is_refused(tmp_path, run_kp, how):
    path, file_name = _escaping_dataset(tmp_path, how)
    code, out, err = run_kp("data", "check", path)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: image 2: file_name {file_name!r} ")
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(InputError, match="image 2"):
        CocoKeypoints.load(path, check_images=False)  # also when no image is opened


def test_dotdot_that_stays_inside_is_fine(tmp_path):
    path = write_coco(tmp_path, [image(1)], [])
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "images/../images/001.png"
    path.write_text(json.dumps(data))
    assert CocoKeypoints.load(path).images[0].path == tmp_path / "images/../images/001.png"


def test_every_command_refuses_an_escaping_dataset(tmp_path, run_kp):
    path, _ = _escaping_dataset(tmp_path, "dotdot")
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    code, _, err = run_kp("eval", "--gt", path, "--pred", pred)
    assert code == 2 and "image 2: file_name" in err and err.count("\n") == 1
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  train: {path}\n")
    code, _, err = run_kp("train", config, f"trainer.run_root={tmp_path / 'runs'}")
    assert code == 2 and "image 2: file_name" in err and err.count("\n") == 1
    code, _, err = run_kp("predict", "--checkpoint", tmp_path / "none.ckpt", path,
                          "--out", tmp_path / "out.json")
    assert code == 2 and "image 2: file_name" in err and err.count("\n") == 1


def test_corner_pixel_origin_labels_become_pixel_centres(tmp_path, run_kp):
    # The same physical points as in tiny_coco, written by a tool whose pixel centres are at +0.5.
    corner = [0.5, 0.5, 2, 32.4, 5.5, 2, 0.3, 5.5, 2]  # the last is left of pixel 0's centre
    path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, corner)])
    coco = CocoKeypoints.load(path, pixel_origin="corner")
    channels = resolve_channels(parse_channels(None), coco.categories, "t")
    gathered = coco.image_keypoints(1, channels)
    np.testing.assert_allclose(gathered.points[0], [[0.0, 0.0]])
    np.testing.assert_allclose(gathered.points[1], [[31.9, 5.0]])
    assert gathered.dropped[2]["outside_image"] == 1
    code, out, _ = run_kp("data", "check", path, "--pixel-origin", "corner", "--json")
    assert code == 0 and json.loads(out)["channels"]["towel.grasp"]["dropped"]["outside_image"]
    with pytest.raises(InputError, match="data.pixel_origin: must be one of"):
        CocoKeypoints.load(path, pixel_origin="centre")
