"""Property-based: mutated COCO JSON files through `kp data check` and `kp eval --gt/--pred`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from tests.fuzzing import (
    SCALARS,
    assert_clean_outcome,
    dump_json,
    fuzz_settings,
    mutated,
    mutated_text,
    run_kp,
)

VALID = {
    "images": [
        {"id": 1, "file_name": "images/1.png", "width": 8, "height": 6},
        {"id": 2, "file_name": "images/2.png", "width": 8, "height": 6},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [1.5, 2.0, 2, 7.0, 5.5, 1],
         "num_keypoints": 2},
        {"id": 2, "image_id": 2, "category_id": 2, "keypoints": [3.0, 3.0, 2], "num_keypoints": 1},
    ],
    "categories": [
        {"id": 1, "name": "towel", "keypoints": ["corner", "grasp"]},
        {"id": 2, "name": "shirt", "keypoints": ["neck"]},
    ],
}
SETTINGS = fuzz_settings(200)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-coco")
    (root / "images").mkdir()
    for name in ("1", "2"):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images" / f"{name}.png")
    pred = root / "pred.json"
    pred.write_text(json.dumps([{"image_id": 1, "detections": {"towel.corner": [[1, 2, 0.9]]}}]))
    return root / "annotations.json", pred


@SETTINGS
@given(doc=mutated(VALID))
def test_mutated_coco_is_checked_or_refused_in_one_line(dataset, doc):
    path, pred = dataset
    path.write_text(dump_json(doc))
    code, _, err = run_kp("data", "check", path)
    assert_clean_outcome(code, err, dump_json(doc))
    code, _, err = run_kp("eval", "--gt", path, "--pred", pred)
    assert_clean_outcome(code, err, dump_json(doc))


@SETTINGS
@given(text=mutated_text(json.dumps(VALID)), channels=st.sampled_from([None, "corner:neck"]))
def test_damaged_coco_text_is_refused_in_one_line(dataset, text, channels):
    path, _ = dataset
    path.write_text(text)
    argv = ["data", "check", path] + (["--channels", channels] if channels else [])
    code, _, err = run_kp(*argv)
    assert_clean_outcome(code, err, repr(text))


@SETTINGS
@example(values=[10**400, 1, 2, 1.0, 1.0, 2], field="image_id", other=[2])
@given(values=st.lists(SCALARS, min_size=6, max_size=6), field=st.sampled_from(
    ["image_id", "category_id", "id", "num_keypoints"]), other=SCALARS)
def test_mutated_keypoint_values_and_ids(dataset, values, field, other):
    path, pred = dataset
    doc = json.loads(json.dumps(VALID))
    doc["annotations"][0]["keypoints"] = values
    doc["annotations"][1][field] = other
    path.write_text(dump_json(doc))
    code, _, err = run_kp("data", "check", path, "--channels", "corner=neck:grasp")
    assert_clean_outcome(code, err, dump_json(doc))
