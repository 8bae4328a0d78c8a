"""Property-based: mutated prediction files through `kp eval --gt/--pred` and the Python API."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from kp_platform.metrics import evaluate_predictions
from tests.fuzzing import (
    SCALARS,
    assert_clean_outcome,
    assert_input_error_or_success,
    dump_json,
    fuzz_settings,
    mutated,
    mutated_text,
    run_kp,
)

CHANNELS = "corner0=corner1:towel.grasp"
VALID = [
    {"image_id": 1, "detections": {"corner0=corner1": [[3.25, 4.5, 0.9], [20.75, 5.0, 0.8]]}},
    {"image_id": 2, "detections": {"corner0=corner1": [[1.5, 1.0, 0.7]],
                                   "towel.grasp": [[15.0, 13.0, 0.9]]}},
]
SETTINGS = fuzz_settings(200)


@SETTINGS
@given(doc=mutated(VALID))
def test_mutated_prediction_file_is_scored_or_refused_in_one_line(tiny_coco, tmp_path, doc):
    pred = tmp_path / "pred.json"
    pred.write_text(dump_json(doc))
    code, _, err = run_kp("eval", "--gt", tiny_coco, "--pred", pred, "--channels", CHANNELS)
    assert_clean_outcome(code, err, dump_json(doc))


@SETTINGS
@given(text=mutated_text(json.dumps(VALID)))
def test_damaged_prediction_text_is_refused_in_one_line(tiny_coco, tmp_path, text):
    pred = tmp_path / "pred.json"
    pred.write_text(text)
    code, _, err = run_kp("eval", "--gt", tiny_coco, "--pred", pred, "--channels", CHANNELS)
    assert_clean_outcome(code, err, repr(text))


@SETTINGS
@example(point=[10**400, 1, 0.5], image_id=1, thresholds=[2])
@given(point=st.lists(SCALARS, max_size=4), image_id=SCALARS,
       thresholds=st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))
def test_loaded_predictions_and_thresholds_in_the_api(tiny_coco, point, image_id, thresholds):
    entries = [{"image_id": image_id, "detections": {"towel.grasp": [point]}}]
    assert_input_error_or_success(
        lambda: evaluate_predictions(tiny_coco, entries, CHANNELS, thresholds))
