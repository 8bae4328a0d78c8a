"""Keypoint AP / PCK / distance statistics: hand-computed cases and oracle equality."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kp_platform.errors import InputError
from kp_platform.metrics import matching as matching_module
from kp_platform.metrics.average_precision import KeypointAP, compute_keypoint_metrics
from tests.metrics import oracle

Image = list[np.ndarray]


def dets(*rows: tuple[float, float, float]) -> np.ndarray:
    """An (n, 3) detection array."""
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def gts(*rows: tuple[float, float]) -> np.ndarray:
    """An (m, 2) ground-truth array."""
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def assert_same(actual: Any, expected: Any, path: str = "") -> None:
    """Same keys, same None-ness, numbers equal to 1e-12."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}/{key}")
    elif expected is None or actual is None:
        assert actual is None and expected is None, (path, actual, expected)
    else:
        assert type(actual) is type(expected), (path, actual, expected)
        assert math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-12), (
            path, actual, expected)


def one_channel(images: list[tuple[np.ndarray, np.ndarray]], thresholds: list[float],
                matching: str = "first") -> dict[str, Any]:
    """compute_keypoint_metrics for one channel "kp", checked against the oracle as well."""
    detections = [[d] for d, _ in images]
    truth = [[g] for _, g in images]
    result = compute_keypoint_metrics(detections, truth, ["kp"], thresholds, matching)
    assert_same(result, oracle.keypoint_metrics(detections, truth, ["kp"], thresholds, matching))
    return result


# --- hand-computed cases ---------------------------------------------------------------------


def test_perfect_detections_give_ap_one() -> None:
    images = [
        (dets((10, 10, 0.9), (20, 20, 0.8)), gts((10, 10), (20, 20))),
        (dets((5, 5, 0.7)), gts((5, 5))),
    ]
    result = one_channel(images, [2, 4])
    assert result["ap"] == {"kp": {"2": 1.0, "4": 1.0}}
    assert result["pck"] == {"kp": {"2": 1.0, "4": 1.0}}
    assert result["distance_px"]["kp"] == {"mean": 0.0, "p50": 0.0, "p90": 0.0}
    assert result["num_gt"] == {"kp": 3}
    assert result["num_images"] == 2
    assert result["map"] == 1.0 and result["mean_ap"] == {"2": 1.0, "4": 1.0}


def test_all_misses_give_zero() -> None:
    images = [(dets((100, 100, 0.9), (200, 0, 0.5)), gts((0, 0), (10, 10)))]
    result = one_channel(images, [2])
    assert result["ap"]["kp"]["2"] == 0.0
    assert result["pck"]["kp"]["2"] == 0.0
    assert result["distance_px"]["kp"] == {"mean": None, "p50": None, "p90": None}


def test_known_pr_curve() -> None:
    # TP, FP, TP, FP, TP over 4 keypoints: precision 1, 1/2, 2/3, 2/4, 3/5 at recall
    # .25, .25, .5, .5, .75; made non-increasing: 1, 2/3, 2/3, 3/5, 3/5.
    # AP = .25 * 1 + .25 * 2/3 + .25 * 3/5 = 17/30.
    images = [(
        dets((0, 0, 0.9), (50, 50, 0.8), (10, 0, 0.7), (60, 60, 0.6), (20, 1, 0.5)),
        gts((0, 0), (10, 0), (20, 0), (30, 0)),
    )]
    result = one_channel(images, [2])
    assert result["ap"]["kp"]["2"] == pytest.approx(17 / 30, abs=1e-15)
    assert result["pck"]["kp"]["2"] == 0.75
    # Distances 0, 0, 1: mean 1/3, p50 0, p90 = 0 + (1 - 0) * 0.8.
    assert result["distance_px"]["kp"] == pytest.approx({"mean": 1 / 3, "p50": 0.0, "p90": 0.8})


def test_score_ties_within_an_image_keep_input_order() -> None:
    # Both reach the only keypoint; with equal scores the first in input order takes it.
    images = [(dets((0, 1, 0.5), (0, 0.5, 0.5)), gts((0, 0)))]
    result = one_channel(images, [2])
    assert result["distance_px"]["kp"]["mean"] == 1.0
    # Reversed input order: the nearer one is first and takes it.
    images = [(dets((0, 0.5, 0.5), (0, 1, 0.5)), gts((0, 0)))]
    assert one_channel(images, [2])["distance_px"]["kp"]["mean"] == 0.5


def test_score_ties_across_images_follow_image_order() -> None:
    miss = (dets((100, 100, 0.5)), gts())
    hit = (dets((0, 0, 0.5)), gts((0, 0)))
    # Pooled FP then TP: precision 0 then 1/2 at recall 1 -> AP 0.5.
    assert one_channel([miss, hit], [2])["ap"]["kp"]["2"] == 0.5
    # TP first: AP 1.
    assert one_channel([hit, miss], [2])["ap"]["kp"]["2"] == 1.0


def test_first_in_list_and_nearest_matching_differ() -> None:
    # A (score .9) reaches both keypoints; first-in-list gives it (0, 0), which B needed.
    images = [(dets((2.9, 0, 0.9), (-3, 0, 0.8)), gts((0, 0), (3, 0)))]
    first = one_channel(images, [4], "first")
    nearest = one_channel(images, [4], "nearest")
    assert first["ap"]["kp"]["4"] == 0.5 and first["pck"]["kp"]["4"] == 0.5
    assert nearest["ap"]["kp"]["4"] == 1.0 and nearest["pck"]["kp"]["4"] == 1.0
    assert nearest["distance_px"]["kp"]["mean"] == pytest.approx((0.1 + 3.0) / 2)


def test_nearest_ties_go_to_list_order() -> None:
    images = [(dets((0, 0, 0.9), (0, 1.5, 0.8)), gts((0, 1), (0, -1)))]
    # Both keypoints are 1 away from the first detection: it takes (0, 1), the first in the list,
    # which leaves the second detection only (0, -1), 2.5 away: a miss at threshold 2.
    result = one_channel(images, [2], "nearest")
    assert result["pck"]["kp"]["2"] == 0.5


def test_channel_without_ground_truth() -> None:
    detections = [[dets((0, 0, 0.9)), dets((5, 5, 0.9))]]
    truth = [[gts((0, 0)), gts()]]
    result = compute_keypoint_metrics(detections, truth, ["a", "b"], [2])
    assert result["ap"] == {"a": {"2": 1.0}, "b": {"2": 0.0}}
    assert result["pck"]["b"] == {"2": 0.0}
    assert result["num_gt"] == {"a": 1, "b": 0}
    assert result["distance_px"]["b"] == {"mean": None, "p50": None, "p90": None}
    assert result["mean_ap"] == {"2": 0.5} and result["map"] == 0.5


def test_detections_on_images_without_ground_truth_are_false_positives() -> None:
    images = [(dets((0, 0, 0.5)), gts((0, 0))), (dets((0, 0, 0.9)), gts())]
    # Pooled: 0.9 FP, 0.5 TP -> precision 1/2 at recall 1.
    assert one_channel(images, [2])["ap"]["kp"]["2"] == 0.5


def test_threshold_tolerance() -> None:
    inside = [(dets((2.0 + 0.5e-5, 0, 0.9)), gts((0, 0)))]
    outside = [(dets((2.0 + 2e-5, 0, 0.9)), gts((0, 0)))]
    assert one_channel(inside, [2])["ap"]["kp"]["2"] == 1.0
    assert one_channel(outside, [2])["ap"]["kp"]["2"] == 0.0


@pytest.mark.parametrize("threshold", [0.0, 1.0, 2.5])
def test_threshold_boundary_at_many_magnitudes(threshold: float) -> None:
    """Detections one ulp either side of ``d + 1e-5``, near and far from the origin.

    Guards the candidate search's widening against rounding: a window or squared-distance
    cut-off that is a hair too tight loses exactly these pairs.
    """
    rng = np.random.default_rng(int(threshold * 10))
    reach = threshold + 1e-5
    images = []
    for exponent in range(-3, 7):
        for _ in range(8):
            origin = rng.uniform(-1, 1) * 10.0**exponent
            for x in (origin + reach, origin - reach):
                for nudged in (np.nextafter(x, -np.inf), x, np.nextafter(x, np.inf)):
                    images.append((dets((nudged, 0.0, 0.5)), gts((origin, 0.0))))
                    images.append((dets((0.0, nudged, 0.5)), gts((0.0, origin))))
    result = one_channel(images, [threshold])
    assert 0.0 < result["pck"]["kp"][format(threshold, "g")] < 1.0  # both sides of the edge


def test_no_images_and_no_detections() -> None:
    result = compute_keypoint_metrics([], [], ["a"], [2.5])
    assert result == {
        "ap": {"a": {"2.5": 0.0}}, "mean_ap": {"2.5": 0.0}, "map": 0.0, "pck": {"a": {"2.5": 0.0}},
        "distance_px": {"a": {"mean": None, "p50": None, "p90": None}},
        "num_gt": {"a": 0}, "num_images": 0,
    }
    result = one_channel([(dets(), gts((1, 1)))], [2])
    assert result["ap"]["kp"]["2"] == 0.0 and result["num_gt"]["kp"] == 1


def test_output_is_plain_json() -> None:
    images = [(dets((0, 0, 0.9), (3, 3, 0.1)), gts((0, 0.5), (9, 9)))]
    result = one_channel(images, [2, 2.5, 8])
    assert list(result["ap"]["kp"]) == ["2", "2.5", "8"]
    assert json.loads(json.dumps(result)) == result
    assert isinstance(result["num_gt"]["kp"], int) and isinstance(result["num_images"], int)


@pytest.mark.parametrize("matching", ["first", "nearest"])
def test_many_candidates_per_detection(matching: str) -> None:
    # A dense cluster: every detection reaches more keypoints than the unrolled minimum handles.
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 3, (20, 2))
    found = np.c_[rng.uniform(0, 3, (25, 2)), rng.choice([0.2, 0.5, 0.7], 25)]
    one_channel([(found, truth), (found[:5], truth[:12])], [0.5, 1, 4], matching)


def test_pair_blocks_and_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    images = []
    for _ in range(7):
        truth = rng.uniform(0, 20, (6, 2))
        found = np.c_[truth[rng.integers(0, 6, 9)] + rng.normal(0, 1, (9, 2)),
                      rng.choice([0.1, 0.5, 0.9], 9)]
        images.append((found, truth))
    expected = one_channel(images, [1, 2, 4])
    detections = [[d] for d, _ in images]
    truth = [[g] for _, g in images]
    monkeypatch.setattr(matching_module, "_PAIR_BLOCK", 3)
    for chunk in (1, 3, 100):
        assert_same(compute_keypoint_metrics(detections, truth, ["kp"], [1, 2, 4],
                                             chunk_images=chunk), expected)


def test_bad_input_is_rejected() -> None:
    good = [[dets((0, 0, 1))]], [[gts((0, 0))]]
    with pytest.raises(InputError):
        compute_keypoint_metrics(*good, ["a"], [])
    with pytest.raises(InputError):
        compute_keypoint_metrics(*good, ["a"], [2, 2.0])
    with pytest.raises(InputError):
        compute_keypoint_metrics(*good, ["a"], [-1])
    with pytest.raises(InputError):
        compute_keypoint_metrics(*good, ["a", "a"], [2])
    with pytest.raises(InputError):
        compute_keypoint_metrics(*good, ["a"], [2], matching="hungarian")
    with pytest.raises(InputError):
        compute_keypoint_metrics([[np.zeros((1, 2))]], good[1], ["a"], [2])
    with pytest.raises(InputError):
        compute_keypoint_metrics(good[0], [], ["a"], [2])
    with pytest.raises(InputError):
        compute_keypoint_metrics([[dets((0, 0, math.nan))]], good[1], ["a"], [2])
    with pytest.raises(InputError):
        KeypointAP(["a"], [2], matching="greedy")


# --- oracle equality on random workloads -------------------------------------------------------

COORDS = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),  # duplicates and exact boundaries
    st.floats(0, 6, allow_nan=False).map(lambda v: round(v, 3)),
)
SCORES = st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0])  # ties within and across images


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]],
                                        list[str], list[float]]:
    """Random images × channels with empty images, images without GT and duplicate points."""
    channels = draw(st.integers(1, 3))
    num_images = draw(st.integers(0, 6))
    offset = draw(st.sampled_from([0.0, 0.0, -3.25, 1e6]))  # far from the origin: rounding
    detections, truth = [], []
    for _ in range(num_images):
        image_dets, image_gts = [], []
        for _ in range(channels):
            g = draw(st.lists(st.tuples(COORDS, COORDS), max_size=5))
            d = draw(st.lists(st.tuples(COORDS, COORDS, SCORES), max_size=7))
            image_gts.append(np.array(g, dtype=np.float64).reshape(-1, 2) + offset)
            arr = np.array(d, dtype=np.float64).reshape(-1, 3)
            arr[:, :2] += offset
            image_dets.append(arr)
        detections.append(image_dets)
        truth.append(image_gts)
    thresholds = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 4.0]),
                               min_size=1, max_size=3, unique=True))
    return detections, truth, [f"c{c}" for c in range(channels)], thresholds


PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(work=workloads(), matching=st.sampled_from(["first", "nearest"]))
def test_vectorised_equals_oracle(work: tuple, matching: str) -> None:
    detections, truth, names, thresholds = work
    assert_same(compute_keypoint_metrics(detections, truth, names, thresholds, matching),
                oracle.keypoint_metrics(detections, truth, names, thresholds, matching))


def pad_batch(detections: list[list[np.ndarray]], truth: list[list[np.ndarray]],
              shuffle: np.random.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Pads images into the update() layout, with padding slots in random places."""
    channels = len(detections[0])
    num_det = max([len(d) for image in detections for d in image] + [0]) + 1
    num_gt = max([len(g) for image in truth for g in image] + [0]) + 1
    # Padding gets NaN coordinates and the top score: it must still never take part.
    det_xy = torch.full((len(detections), channels, num_det, 2), math.nan, dtype=torch.float64)
    det_scores = torch.full((len(detections), channels, num_det), 5.0, dtype=torch.float64)
    det_valid = torch.zeros(len(detections), channels, num_det, dtype=torch.bool)
    gt_xy = torch.full((len(detections), channels, num_gt, 2), -7.0, dtype=torch.float64)
    gt_valid = torch.zeros(len(detections), channels, num_gt, dtype=torch.bool)
    for i, (image_dets, image_gts) in enumerate(zip(detections, truth, strict=True)):
        for c in range(channels):
            d, g = image_dets[c], image_gts[c]
            # Real detections keep their relative order (it breaks score ties); padding is
            # interleaved to check that it never takes part.
            slots = (np.arange(len(d)) if shuffle is None
                     else np.sort(shuffle.permutation(num_det)[:len(d)]))
            det_xy[i, c, slots] = torch.from_numpy(d[:, :2])
            det_scores[i, c, slots] = torch.from_numpy(d[:, 2])
            det_valid[i, c, slots] = True
            gt_xy[i, c, :len(g)] = torch.from_numpy(g)
            gt_valid[i, c, :len(g)] = True
    return det_xy, det_scores, det_valid, gt_xy, gt_valid


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # zero-image draws
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(work=workloads(), matching=st.sampled_from(["first", "nearest"]),
       cuts=st.lists(st.integers(1, 6), max_size=4), seed=st.integers(0, 2**16))
def test_metric_class_in_batches_equals_functional(work: tuple, matching: str,
                                                   cuts: list[int], seed: int) -> None:
    detections, truth, names, thresholds = work
    metric = KeypointAP(names, thresholds, matching)
    rng = np.random.default_rng(seed)
    start = 0
    bounds = sorted({min(c, len(detections)) for c in cuts} | {len(detections)})
    for stop in bounds:
        if stop > start:
            metric.update(*pad_batch(detections[start:stop], truth[start:stop], rng))
            start = stop
    expected = compute_keypoint_metrics(detections, truth, names, thresholds, matching)
    assert_same(metric.compute(), expected)


def test_metric_class_merge_with_image_ids_matches_single_process() -> None:
    """Two "ranks" with interleaved images, merged like a DDP sync, give the global result."""
    rng = np.random.default_rng(3)
    detections, truth = [], []
    for _ in range(10):
        g = rng.uniform(0, 10, (4, 2))
        d = np.c_[g[rng.integers(0, 4, 5)] + rng.normal(0, 1, (5, 2)), rng.choice([0.3, 0.6], 5)]
        detections.append([d])
        truth.append([g])
    ranks = [KeypointAP(["kp"], [1, 2]), KeypointAP(["kp"], [1, 2])]
    for rank, metric in enumerate(ranks):
        ids = list(range(rank, 10, 2))
        for k in range(0, len(ids), 2):
            batch = ids[k:k + 2]
            metric.update(*pad_batch([detections[i] for i in batch], [truth[i] for i in batch]),
                          image_ids=torch.tensor(batch))
    ranks[1].merge_state(ranks[0])  # rank-major order the wrong way round on purpose
    expected = compute_keypoint_metrics(detections, truth, ["kp"], [1, 2])
    assert_same(ranks[1].compute(), expected)


def test_metric_class_sync_with_a_rank_that_saw_nothing() -> None:
    """torchmetrics pads an idle rank's list states with empty float32 tensors when syncing."""
    # Equal scores across images: the id order (not the update order) decides, and the ids differ
    # by less than float32 resolves.
    detections = [[dets((50, 50, 0.5))], [dets((1, 1, 0.5))]]
    truth = [[gts()], [gts((1, 1.5))]]
    sums: set[int] = set()

    def gather(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
        idle = torch.zeros_like(tensor) if id(tensor) in sums else torch.tensor([])
        return [idle, tensor]

    metric = KeypointAP(["kp"], [1, 2], dist_sync_fn=gather,
                        distributed_available_fn=lambda: True)
    metric.update(*pad_batch(detections, truth), image_ids=torch.tensor([2**40 + 1, 2**40]))
    sums.update({id(metric.num_gt), id(metric.num_images)})
    result = metric.compute()
    assert_same(result, compute_keypoint_metrics(detections[::-1], truth[::-1], ["kp"], [1, 2]))
    assert result["ap"]["kp"]["1"] == 1.0


def test_metric_class_reset_and_empty() -> None:
    metric = KeypointAP(["a", "b"], [2])
    batch = pad_batch([[dets((0, 0, 1)), dets()]], [[gts((0, 0)), gts((1, 1))]])
    metric.update(*batch)
    assert metric.compute()["ap"] == {"a": {"2": 1.0}, "b": {"2": 0.0}}
    metric.reset()
    with pytest.warns(UserWarning):  # torchmetrics: compute() before update()
        result = metric.compute()
    assert result["num_images"] == 0 and result["map"] == 0.0


def test_metric_class_accepts_infinite_scores_and_interleaved_padding() -> None:
    # Two -inf scores tie; the first in input order takes the keypoint, padding in between.
    det_xy = torch.tensor([[[[0.0, 1.0], [math.nan, math.nan], [0.0, 0.5]]]], dtype=torch.float64)
    det_scores = torch.tensor([[[-math.inf, 9.0, -math.inf]]], dtype=torch.float64)
    det_valid = torch.tensor([[[True, False, True]]])
    metric = KeypointAP(["kp"], [2])
    metric.update(det_xy, det_scores, det_valid, torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1,
                                                                                  dtype=torch.bool))
    result = metric.compute()
    assert result["distance_px"]["kp"]["mean"] == 1.0
    assert result["ap"]["kp"]["2"] == 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metric_class_on_gpu_equals_cpu() -> None:
    rng = np.random.default_rng(5)
    detections, truth = [], []
    for _ in range(16):
        g = rng.uniform(0, 50, (8, 2))
        d = np.c_[g[rng.integers(0, 8, 12)] + rng.normal(0, 2, (12, 2)),
                  rng.choice([0.2, 0.4, 0.8], 12)]
        detections.append([d, d[:3]])
        truth.append([g, g[:2]])
    for matching in ("first", "nearest"):
        metric = KeypointAP(["a", "b"], [1, 2, 4], matching).to("cuda")
        for k in range(0, 16, 5):
            batch = pad_batch(detections[k:k + 5], truth[k:k + 5])
            metric.update(*(t.cuda() for t in batch))
        assert_same(metric.compute(),
                    compute_keypoint_metrics(detections, truth, ["a", "b"], [1, 2, 4], matching))


def test_curves_are_the_curve_behind_the_ap():
    metric = KeypointAP(["a", "b"], [1.0, 4.0])
    # image 0: channel a has 2 GT; detections: a hit (0.9), a miss (0.8), a 2-px-off hit (0.7)
    det_xy = torch.tensor([[[[0.0, 0.0], [50.0, 50.0], [12.0, 10.0]], [[0.0, 0.0]] * 3]])
    det_scores = torch.tensor([[[0.9, 0.8, 0.7], [0.0, 0.0, 0.0]]])
    det_valid = torch.tensor([[[True, True, True], [False, False, False]]])
    gt_xy = torch.tensor([[[[0.0, 0.0], [10.0, 10.0]], [[5.0, 5.0], [0.0, 0.0]]]])
    gt_valid = torch.tensor([[[True, True], [True, False]]])
    metric.update(det_xy, det_scores, det_valid, gt_xy, gt_valid)
    curves = metric.curves()
    assert set(curves) == {"a"}  # channel b has no detections
    recall, precision = curves["a"]["4"]
    np.testing.assert_allclose(recall, [0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(precision, [1, 1, 2 / 3, 2 / 3, 0])
    ap = float(((recall[1:] - recall[:-1]) * precision[1:]).sum())
    assert ap == pytest.approx(metric.compute()["ap"]["a"]["4"])
    recall, _ = curves["a"]["1"]
    np.testing.assert_allclose(recall, [0, 0.5, 0.5, 0.5, 1.0])
