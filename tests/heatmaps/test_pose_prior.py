"""The pose prior: fitted to labels with missing points, it picks the peak the pose agrees with.

The choice tests use a pose of three keypoints where the third always lies straight above the
first (as a side-view paw lies above its bottom-view twin in a mirror rig) and its heatmap holds
two peaks: a stronger one elsewhere and a weaker one above the first keypoint. The prior fitted to
such labels picks the weaker one; fitted to the same labels with the third keypoint's rows
shuffled between images (no relation left to learn), it keeps the stronger.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kp_platform.heatmaps import Detections
from kp_platform.heatmaps.pose_prior import PosePrior, choose_top1


def above_the_first(count: int, seed: int, shuffle: bool = False) -> np.ndarray:
    """(count, 3, 2) labels: keypoint 0 anywhere, 1 anywhere, 2 straight above 0."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(20, 220, (count, 2))
    second = rng.uniform(20, 220, (count, 2))
    third = first + np.stack([rng.normal(0, 1.5, count), np.full(count, -40.0)], axis=1)
    if shuffle:
        third = third[rng.permutation(count)]
    return np.stack([first, second, third], axis=1)


def peaks(third: list[tuple[float, float, float]]):
    """One image: keypoints 0 and 1 with one peak each, keypoint 2 with `third`'s peaks."""
    xy = np.zeros((3, 4, 2))
    scores = np.zeros((3, 4))
    valid = np.zeros((3, 4), dtype=bool)
    xy[0, 0], scores[0, 0], valid[0, 0] = (100, 150), 0.9, True
    xy[1, 0], scores[1, 0], valid[1, 0] = (60, 60), 0.9, True
    for k, (x, y, s) in enumerate(third):
        xy[2, k], scores[2, k], valid[2, k] = (x, y), s, True
    return xy, scores, valid


# Keypoint 2: a stronger peak 60 px off to the right, a weaker one straight above keypoint 0.
WRONG_THEN_RIGHT = [(160, 110, 0.7), (101, 110, 0.5)]


def test_the_fit_recovers_a_gaussian_from_labels_with_missing_points():
    rng = np.random.default_rng(0)
    mixing = rng.normal(0, 10, (6, 6))
    truth_cov = mixing @ mixing.T
    truth_mean = rng.uniform(50, 200, 6)
    samples = rng.multivariate_normal(truth_mean, truth_cov, 4000)
    missing = rng.random(samples.shape[:1] + (3,)) < 0.2  # a point (both coordinates) unlabelled
    points = samples.reshape(-1, 3, 2).copy()
    points[missing] = np.nan
    prior = PosePrior.fit(points, [0, 1, 2], noise=0.0)
    assert np.abs(prior.mean - truth_mean).max() < 1.5
    # Within a few percent of the largest variance (shrinkage with 4000 images is tiny).
    assert np.abs(prior.covariance - truth_cov).max() < 0.05 * np.abs(truth_cov).max()
    # Complete cases only would be as good here; zeros for the missing points would not be.
    zeros = np.nan_to_num(points).reshape(len(points), -1)
    assert np.abs(zeros.mean(axis=0) - truth_mean).max() > 10


def test_the_prior_picks_the_peak_the_pose_agrees_with():
    prior = PosePrior.fit(above_the_first(60, seed=0), [0, 1, 2], noise=2.0)
    assert prior.choose(*peaks(WRONG_THEN_RIGHT), min_score=0.1).tolist() == [0, 0, 1]


def test_a_prior_fitted_to_shuffled_labels_keeps_the_best_peak():
    # The control: the same images with keypoint 2 moved to other images' places.
    prior = PosePrior.fit(above_the_first(60, seed=0, shuffle=True), [0, 1, 2], noise=2.0)
    assert prior.choose(*peaks(WRONG_THEN_RIGHT), min_score=0.1).tolist() == [0, 0, 0]


def test_only_peaks_above_the_score_are_candidates():
    prior = PosePrior.fit(above_the_first(60, seed=0), [0, 1, 2], noise=2.0)
    assert prior.choose(*peaks(WRONG_THEN_RIGHT), min_score=0.6).tolist() == [0, 0, 0]


def test_the_prior_never_moves_a_channel_with_one_peak_or_none():
    prior = PosePrior.fit(above_the_first(60, seed=0), [0, 1, 2], noise=2.0)
    xy, scores, valid = peaks([(160, 110, 0.7)])
    assert prior.choose(xy, scores, valid, min_score=0.1).tolist() == [0, 0, 0]
    xy, scores, valid = peaks([])
    assert prior.choose(xy, scores, valid, min_score=0.1).tolist() == [0, 0, 0]


def test_choose_top1_moves_the_chosen_peak_first_and_keeps_every_peak():
    prior = PosePrior.fit(above_the_first(60, seed=0), [0, 1, 2], noise=2.0)
    xy, scores, valid = peaks(WRONG_THEN_RIGHT)
    # Two images, a fourth channel outside the prior (channel 3), left alone.
    batch_xy = torch.zeros(2, 4, 4, 2)
    batch_scores = torch.zeros(2, 4, 4)
    batch_valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    batch_xy[:, :3] = torch.from_numpy(xy).float()
    batch_scores[:, :3] = torch.from_numpy(scores).float()
    batch_valid[:, :3] = torch.from_numpy(valid)
    batch_xy[:, 3, :2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    batch_scores[:, 3, :2] = torch.tensor([0.8, 0.6])
    batch_valid[:, 3, :2] = True
    detections = Detections(batch_xy, batch_scores, batch_valid)
    chosen = choose_top1(detections, prior, min_score=0.1)
    assert chosen.xy[:, 2, 0].tolist() == [[101.0, 110.0]] * 2
    assert chosen.scores[:, 2, :2].tolist() == [[0.5, 0.699999988079071]] * 2
    for field in ("xy", "scores", "valid"):  # the other channels, untouched
        keep = [0, 1, 3]
        assert torch.equal(getattr(chosen, field)[:, keep], getattr(detections, field)[:, keep])
    assert torch.equal(chosen.valid, detections.valid)


def test_the_prior_survives_a_weights_only_checkpoint(tmp_path):
    prior = PosePrior.fit(above_the_first(30, seed=1), [0, 2, 5], noise=1.0)
    torch.save({"pose_prior": prior.state()}, tmp_path / "prior.pt")
    loaded = PosePrior.from_state(torch.load(tmp_path / "prior.pt", weights_only=True)
                                  ["pose_prior"])
    assert loaded.channels == (0, 2, 5)
    assert np.array_equal(loaded.mean, prior.mean)
    assert np.array_equal(loaded.covariance, prior.covariance)


def test_a_channel_labelled_in_one_image_only_cannot_be_fitted():
    points = above_the_first(10, seed=0)
    points[1:, 2] = np.nan
    with pytest.raises(ValueError, match="at least 2 images"):
        PosePrior.fit(points, [0, 1, 2], noise=1.0)
