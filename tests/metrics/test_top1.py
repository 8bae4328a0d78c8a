"""Top-1 pixel error, PCK and swap rate: hand-computed cases, and the same through files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kp_platform.errors import InputError
from kp_platform.metrics import Top1Error, evaluate_predictions, top1_pairs, top1_summary
from tests.conftest import annotation, image, write_coco


def _batch():
    """2 images, channels a, b (single) and c (two points); a 30 x 40 image (diagonal 50).

    Image 1: a's peak on its label; b's peak 1 px from a's label (a swap, 29 px from its own).
    Image 2: a has no peak (the diagonal); b's peak on its label.
    """
    det = torch.zeros(2, 3, 2, 2)
    valid = torch.zeros(2, 3, 2, dtype=torch.bool)
    det[0, 0, 0], valid[0, 0, 0] = torch.tensor([10.0, 10.0]), True
    det[0, 1, 0], valid[0, 1, 0] = torch.tensor([11.0, 10.0]), True
    det[1, 1, 0], valid[1, 1, 0] = torch.tensor([30.0, 20.0]), True
    gt = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    gt_valid = torch.zeros(2, 3, 2, dtype=torch.bool)
    gt[0, 0, 0], gt_valid[0, 0, 0] = torch.tensor([10.0, 10.0]), True
    gt[0, 1, 0], gt_valid[0, 1, 0] = torch.tensor([40.0, 10.0]), True
    gt[1, 0, 0], gt_valid[1, 0, 0] = torch.tensor([5.0, 5.0]), True
    gt[1, 1, 0], gt_valid[1, 1, 0] = torch.tensor([30.0, 20.0]), True
    gt[1, 2, :], gt_valid[1, 2, :] = torch.tensor([[1.0, 1.0], [2.0, 2.0]]), True
    return det, valid, gt, gt_valid, torch.tensor([[30, 40], [30, 40]])


def test_errors_swaps_and_missing_peaks_by_hand():
    pairs = top1_pairs(*_batch(), channels=[0, 1])
    assert pairs["error"].tolist() == [0.0, 29.0, 50.0, 0.0]  # image-major, then channel
    assert pairs["swapped"].tolist() == [False, True, False, False]
    assert pairs["found"].tolist() == [True, True, False, True]
    summary = top1_summary(pairs["error"], pairs["channel"], pairs["swapped"], pairs["found"],
                           ["a", "b"], [2.0, 30.0])
    assert summary["error_px"]["a"] == {"mean": 25.0, "median": 25.0, "num": 2}
    assert summary["error_px"]["b"] == {"mean": 14.5, "median": 14.5, "num": 2}
    assert summary["pck"]["b"] == {"2": 0.5, "30": 1.0}
    assert summary["swap_rate"] == {"a": 0.0, "b": 0.5}
    assert summary["missing"] == {"a": 1, "b": 0}
    overall = summary["overall"]
    assert overall["mean"] == 19.75 and overall["median"] == 14.5 and overall["num"] == 4
    assert overall["swap_rate"] == 0.25 and overall["pck"] == {"2": 0.5, "30": 0.75}


def test_a_channel_with_two_labels_in_an_image_counts_nowhere():
    pairs = top1_pairs(*_batch(), channels=[2])
    assert pairs["error"].numel() == 0  # c is labelled twice in image 2, never once
    summary = top1_summary(pairs["error"], pairs["channel"], pairs["swapped"], pairs["found"],
                           ["c"], [2.0])
    assert summary["overall"]["mean"] is None and summary["overall"]["num"] == 0


def test_the_metric_pools_batches_like_one():
    det, valid, gt, gt_valid, size = _batch()
    whole = Top1Error(["a", "b", "c"], ["a", "b"], [2.0])
    whole.update(det, valid, gt, gt_valid, size)
    split = Top1Error(["a", "b", "c"], ["a", "b"], [2.0])
    for i in (1, 0):  # the other order, one image at a time
        split.update(det[i:i + 1], valid[i:i + 1], gt[i:i + 1], gt_valid[i:i + 1],
                     size[i:i + 1])
    assert split.compute() == whole.compute()


def test_unknown_top1_channels_are_an_input_error():
    with pytest.raises(InputError, match="eval.top1_channels"):
        Top1Error(["a", "b"], ["nose"], [2.0])


def test_prediction_files_are_scored_by_their_best_detection(tmp_path):
    category = {"id": 1, "name": "m", "keypoints": ["l", "r"]}
    anns = [annotation(1, 1, 1, [10.0, 10.0, 2, 20.0, 10.0, 2]),
            annotation(2, 2, 1, [5.0, 5.0, 2, 0, 0, 0])]
    gt = write_coco(tmp_path, [image(1), image(2)], anns, [category], write_images=False)
    pred = [{"image_id": 1, "detections": {"l": [[19.5, 10.0, 0.9], [10.0, 10.0, 0.5]],
                                           "r": [[20.0, 12.0, 0.8]]}},
            {"image_id": 2, "detections": {"l": [[5.0, 8.0, 0.7]], "r": []}}]
    metrics = evaluate_predictions(gt, pred, None, [2.5])
    top1 = metrics["top1"]
    # l: image 1's best peak sits on r's label (9.5 px off, a swap); image 2: 3 px off.
    assert top1["error_px"]["l"]["mean"] == pytest.approx((9.5 + 3.0) / 2)
    assert top1["swap_rate"]["l"] == 0.5
    assert top1["error_px"]["r"] == {"mean": 2.0, "median": 2.0, "num": 1}
    assert top1["pck"]["r"] == {"2.5": 1.0}
    assert np.isclose(top1["overall"]["mean"], (9.5 + 3.0 + 2.0) / 3)
    json.dumps(metrics)  # plain numbers
