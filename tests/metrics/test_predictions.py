from __future__ import annotations

import json

import pytest

from kp_platform.data import CocoKeypoints
from kp_platform.metrics import evaluate_predictions

CHANNELS = "corner0=corner1:towel.grasp"


def _perfect(tiny_coco):
    # tiny_coco: image 1 has corner0 (3.25, 4.5) and corner1 (20.75, 5.0); image 2 has
    # corner0 (1, 1), corner1 (30.5, 22.5) and grasp (15, 12); image 3 is negative.
    return [
        {"image_id": 1, "detections": {"corner0=corner1": [[3.25, 4.5, 0.9], [20.75, 5.0, 0.8]]}},
        {"image_id": 2, "detections": {"corner0=corner1": [[1.5, 1.0, 0.7], [30.5, 22.5, 0.6]],
                                       "towel.grasp": [[15.0, 13.0, 0.9]]}},
    ]


def test_hand_written_prediction_file_via_cli(tiny_coco, tmp_path, run_kp):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(tiny_coco)))
    out = tmp_path / "metrics.json"
    code, text, err = run_kp("eval", "--gt", tiny_coco, "--pred", pred, "--channels", CHANNELS,
                             "--thresholds", "0.25", "2", "--out", out)
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert metrics["num_gt"] == {"corner0=corner1": 4, "towel.grasp": 1}
    assert metrics["num_images"] == 3
    # at 0.25 px the detection 0.5 px off (score 0.7) is a false positive, the grasp 1 px off
    # too. Corner curve (p, r): (1, .25) (1, .5) (2/3, .5) (3/4, .75) → AP = .25 + .25 + .1875
    assert metrics["ap"]["corner0=corner1"] == {"0.25": 0.6875, "2": 1.0}
    assert metrics["ap"]["towel.grasp"] == {"0.25": 0.0, "2": 1.0}
    assert metrics["mean_ap"] == {"0.25": 0.34375, "2": 1.0}
    assert metrics["map"] == pytest.approx((0.6875 + 1 + 0 + 1) / 4)
    assert metrics["pck"]["corner0=corner1"]["0.25"] == 0.75
    assert metrics["distance_px"]["towel.grasp"]["mean"] == pytest.approx(1.0)
    assert "corner0=corner1" in text and "mAP" in text


def test_images_without_an_entry_count_as_no_detections(tiny_coco):
    only_first = _perfect(tiny_coco)[:1]
    metrics = evaluate_predictions(tiny_coco, only_first, CHANNELS, [2])
    assert metrics["ap"]["corner0=corner1"]["2"] == 0.5  # half the ground truth never found
    assert metrics["ap"]["towel.grasp"]["2"] == 0.0


def test_api_accepts_loaded_objects_and_paths(tiny_coco, tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(tiny_coco)))
    from_paths = evaluate_predictions(str(tiny_coco), str(pred), CHANNELS, [1, 2])
    loaded = evaluate_predictions(CocoKeypoints.load(tiny_coco), _perfect(tiny_coco), CHANNELS,
                                  [1, 2])
    assert from_paths == loaded


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{", "invalid JSON at line 1"),
        ('{"image_id": 1}', "expected a JSON list"),
        ('[{"image_id": 99, "detections": {}}]', "entry 0: unknown image id 99"),
        ('[{"image_id": 1, "detections": {"elbow": []}}]', "image 1: unknown channel 'elbow'"),
        ('[{"image_id": 1, "detections": {"towel.grasp": [[1, NaN, 0.5]]}}]',
         "image 1, channel 'towel.grasp': detection 0 has NaN or infinite values"),
        ('[{"image_id": 1, "detections": {"towel.grasp": [[1, 2, Infinity]]}}]',
         "detection 0 has NaN or infinite values"),
        ('[{"image_id": 1, "detections": {"towel.grasp": [[1, 2]]}}]',
         "detection 0 is not [x, y, score]"),
        ('[{"image_id": 1, "detections": {"towel.grasp": [1, 2, 3]}}]',
         "detection 0 is not [x, y, score]"),
        ('[{"image_id": 1, "detections": {"towel.grasp": [["a", 2, 3]]}}]', "non-numeric"),
        ('[{"image_id": 1, "detections": {}}, {"image_id": 1, "detections": {}}]',
         "image 1: predicted more than once"),
        ('[{"image_id": 1}]', "entry 0: expected {image_id, detections"),
    ],
)
def test_bad_prediction_files(tiny_coco, tmp_path, run_kp, content, message):
    pred = tmp_path / "pred.json"
    pred.write_text(content)
    code, _, err = run_kp("eval", "--gt", tiny_coco, "--pred", pred, "--channels", CHANNELS)
    assert code == 2
    assert err.startswith(f"error: {pred}: ") and err.count("\n") == 1, err
    assert message in err


def test_non_positive_threshold_is_rejected(tiny_coco, tmp_path, run_kp):
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    code, _, err = run_kp("eval", "--gt", tiny_coco, "--pred", pred, "--thresholds", "0")
    assert code == 2 and "thresholds must be positive" in err


def test_loaded_coco_dict_and_prediction_list_score_as_the_files_do(tiny_coco, tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_perfect(tiny_coco)))
    from_files = evaluate_predictions(tiny_coco, pred, CHANNELS, [0.25, 2])
    with open(tiny_coco) as handle:
        gt = json.load(handle)
    with open(pred) as handle:
        entries = json.load(handle)
    assert evaluate_predictions(gt, entries, CHANNELS, [0.25, 2]) == from_files
    assert evaluate_predictions(gt, pred, CHANNELS, (0.25, 2)) == from_files


@pytest.mark.parametrize(
    "gt, predictions, thresholds, match",
    [
        (42, [], [2], "gt: expected a COCO JSON path, a COCO dict"),
        (["images"], [], [2], "gt: expected a COCO JSON path, a COCO dict"),
        ({"images": []}, [], [2], "gt: missing top-level key"),
        (None, {"image_id": 1}, [2], "predictions: expected a prediction JSON path or a list"),
        (None, 3.5, [2], "predictions: expected a prediction JSON path or a list"),
        (None, [{"image_id": [1], "detections": {}}], [2], r"entry 0: unknown image id \[1\]"),
        (None, [], [], "thresholds: expected a list of positive distances"),
        (None, [], "2", "thresholds: expected a list of positive distances"),
        (None, [], [2, -1], "thresholds: expected a list of positive distances"),
        (None, [], [float("nan")], "thresholds: expected a list of positive distances"),
    ],
)
def test_other_argument_types_are_a_clear_input_error(tiny_coco, gt, predictions, thresholds,
                                                      match):
    from kp_platform.errors import InputError

    with pytest.raises(InputError, match=match):
        evaluate_predictions(tiny_coco if gt is None else gt, predictions, CHANNELS, thresholds)


def test_pixel_origin_corner_shifts_both_files(tiny_coco, tmp_path, run_kp):
    entries = _perfect(tiny_coco)
    centre = evaluate_predictions(tiny_coco, entries, CHANNELS, [0.25, 2])
    data = json.loads(tiny_coco.read_text())
    for ann in data["annotations"]:
        values = ann["keypoints"]
        for k in range(0, len(values), 3):
            values[k] += 0.5
            values[k + 1] += 0.5
    for entry in entries:
        for points in entry["detections"].values():
            for point in points:
                point[0] += 0.5
                point[1] += 0.5
    corner = evaluate_predictions(data, entries, CHANNELS, [0.25, 2], pixel_origin="corner")
    assert corner == centre
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(data))
    pred.write_text(json.dumps(entries))
    out = tmp_path / "metrics.json"
    code, _, err = run_kp("eval", "--gt", gt, "--pred", pred, "--channels", CHANNELS,
                          "--thresholds", "0.25", "2", "--pixel-origin", "corner", "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text())["ap"] == centre["ap"]
