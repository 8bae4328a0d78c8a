"""A pose prior for the top-1 channels: where each keypoint lies given where the others lie.

Look-alike keypoints (a mouse's left and right hind paw) give a heatmap two similar peaks, and
the channel's best peak is on the wrong one in a share of new images. Which one is right shows in
the rest of the pose: in the labelled frames a paw keeps its place relative to the nose, the tail
and the other view's paws. This module learns that from the training labels and uses it to choose
among the peaks the network found, the way pictorial-structure models and Lightning Pose's pose
PCA loss use the same regularity.

The model: the vector of all top-1 channels' (x, y) in input pixels is Gaussian. Its mean and
covariance are fitted to the training labels by expectation-maximisation (unlabelled points are
missing values, not zeros), shrunk towards a scaled identity by the Ledoit-Wolf coefficient (a few
tens of frames estimate a covariance of tens of dimensions badly), and widened by the
localisation noise of a peak (the heatmap's sigma) on every coordinate.

Choosing: every channel starts on its best peak. Then, channel by channel, the Gaussian
conditioned on the other channels' current points gives where this channel's keypoint should lie,
and the channel takes the peak maximising log(score) + log N(peak | that conditional); rounds
repeat until no channel changes. A channel whose peaks are one only keeps it; the prior never
invents a point, it only picks among the network's peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from kp_platform.heatmaps.decode import Detections

# Expectation-maximisation rounds for the missing labels, and when they stop early.
_EM_ROUNDS = 100
_EM_TOLERANCE = 1e-6
# Rounds of the channel-by-channel choice; one or two suffice in practice.
_CHOICE_ROUNDS = 10
_LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class PosePrior:
    """A Gaussian over the top-1 channels' points.

    Attributes:
        mean: (2P,) [x0, y0, x1, y1, ...] in input pixels, for the P prior channels.
        covariance: (2P, 2P).
        channels: The P channel indices (into the model's channels) the prior covers.
    """

    mean: np.ndarray
    covariance: np.ndarray
    channels: tuple[int, ...]

    @classmethod
    def fit(cls, points: np.ndarray, channels: list[int], noise: float) -> PosePrior:
        """Fits the prior to labelled points.

        Args:
            points: (N, P, 2) labelled points in input pixels, NaN where a point is unlabelled.
            channels: The P channel indices the columns of `points` belong to.
            noise: Standard deviation (input pixels) added on every coordinate: how far a
                peak lies from its keypoint.

        Raises:
            ValueError: Fewer than two images, or a channel labelled in fewer than two.
        """
        data = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
        data = data[~np.isnan(data).all(axis=1)]  # an image with none of them labelled
        labelled = ~np.isnan(data)
        if len(data) < 2 or labelled.sum(axis=0).min() < 2:
            raise ValueError("a pose prior needs every channel labelled in at least 2 images")
        mean, covariance, completed = _fit_with_missing(data, labelled)
        shrinkage = float(ledoit_wolf_shrinkage(completed - mean))
        target = np.trace(covariance) / len(mean) * np.eye(len(mean))
        covariance = (1 - shrinkage) * covariance + shrinkage * target
        covariance += noise**2 * np.eye(len(mean))
        return cls(mean, covariance, tuple(int(c) for c in channels))

    def choose(self, xy: np.ndarray, scores: np.ndarray, valid: np.ndarray,
               min_score: float) -> np.ndarray:
        """Picks one peak per prior channel in one image.

        Args:
            xy: (P, K, 2) each prior channel's peaks in input pixels.
            scores: (P, K) their heatmap scores in (0, 1].
            valid: (P, K) bool; a channel's valid peaks are a prefix, best first.
            min_score: Only peaks above it are candidates (a channel's best peak always is).

        Returns:
            (P,) int64 index of the chosen peak per channel (0 where it has none).
        """
        count = np.where(valid[:, 0], np.maximum(1, (valid & (scores > min_score)).sum(axis=1)),
                         0)
        chosen = np.zeros(len(count), dtype=np.int64)
        present = np.flatnonzero(count > 0)
        if len(present) < 2:
            return chosen
        # The Gaussian of the channels that have a peak (the others are marginalised out).
        dims = np.stack([2 * present, 2 * present + 1], axis=1).reshape(-1)
        precision = np.linalg.inv(self.covariance[np.ix_(dims, dims)])
        mean = self.mean[dims].reshape(-1, 2)
        log_score = np.log(np.maximum(scores, _LOG_FLOOR))
        for _ in range(_CHOICE_ROUNDS):
            changed = False
            for slot, channel in enumerate(present):
                if count[channel] < 2:
                    continue
                current = xy[present, chosen[present]] - mean  # (n, 2) centred
                block = precision[2 * slot : 2 * slot + 2]  # (2, 2n)
                inner = block[:, 2 * slot : 2 * slot + 2]
                others = block @ current.reshape(-1) - inner @ current[slot]
                # Conditional of this channel given the others: N(mean - inner⁻¹ others, inner⁻¹)
                centre = mean[slot] - np.linalg.solve(inner, others)
                offsets = xy[channel, : count[channel]] - centre
                log_prior = -0.5 * np.einsum("ki,ij,kj->k", offsets, inner, offsets)
                best = int(np.argmax(log_score[channel, : count[channel]] + log_prior))
                if best != chosen[channel]:
                    chosen[channel], changed = best, True
            if not changed:
                break
        return chosen

    def state(self) -> dict[str, list]:
        """Plain lists for a checkpoint (`torch.load(weights_only=True)` reads them back)."""
        return {"mean": self.mean.tolist(), "covariance": self.covariance.tolist(),
                "channels": list(self.channels)}

    @classmethod
    def from_state(cls, state: dict[str, list]) -> PosePrior:
        return cls(np.asarray(state["mean"], dtype=np.float64),
                   np.asarray(state["covariance"], dtype=np.float64),
                   tuple(int(c) for c in state["channels"]))


def choose_top1(detections: Detections, prior: PosePrior, min_score: float) -> Detections:
    """Moves each prior channel's chosen peak (`PosePrior.choose`) to its first slot, which
    the top-1 metrics and predictions read; the set of peaks and their scores do not change.

    Args:
        detections: A batch in input pixels, best first per channel.
        prior: The prior; its channels index `detections`' channels.
        min_score: Peaks above it are candidates.
    """
    channels = list(prior.channels)
    xy = detections.xy.detach().cpu().double().numpy()[:, channels]
    scores = detections.scores.detach().cpu().numpy()[:, channels]
    valid = detections.valid.detach().cpu().numpy()[:, channels]
    order = np.broadcast_to(np.arange(detections.xy.shape[2]), detections.scores.shape).copy()
    for image in range(len(xy)):
        chosen = prior.choose(xy[image], scores[image], valid[image], min_score)
        for slot, channel in enumerate(channels):
            order[image, channel, [0, chosen[slot]]] = [chosen[slot], 0]
    if (order == np.arange(order.shape[2])).all():
        return detections
    index = torch.from_numpy(order).to(detections.xy.device)
    return Detections(torch.gather(detections.xy, 2, index[..., None].expand_as(detections.xy)),
                      torch.gather(detections.scores, 2, index),
                      torch.gather(detections.valid, 2, index))


def _fit_with_missing(data: np.ndarray, labelled: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood Gaussian of rows with missing values (EM).

    Returns the mean, the covariance and the rows with their missing values filled in by their
    conditional expectation.
    """
    mean = np.nanmean(data, axis=0)
    covariance = np.diag(np.nanvar(data, axis=0) + 1e-6)
    completed = np.where(labelled, data, mean)
    # Images that miss the same points share one regression per round.
    patterns, pattern_of = np.unique(labelled, axis=0, return_inverse=True)
    groups = [(known, np.flatnonzero(pattern_of.reshape(-1) == index))
              for index, known in enumerate(patterns) if not known.all()]
    for _ in range(_EM_ROUNDS):
        extra = np.zeros_like(covariance)  # the conditional covariances of the filled values
        for known, rows in groups:
            missing = ~known
            gain = np.linalg.solve(covariance[np.ix_(known, known)],
                                   covariance[np.ix_(known, missing)]).T
            completed[np.ix_(rows, missing)] = (
                mean[missing] + (data[np.ix_(rows, known)] - mean[known]) @ gain.T)
            extra[np.ix_(missing, missing)] += len(rows) * (
                covariance[np.ix_(missing, missing)] - gain @ covariance[np.ix_(known, missing)])
        new_mean = completed.mean(axis=0)
        centred = completed - new_mean
        new_covariance = (centred.T @ centred + extra) / len(data)
        step = np.abs(new_covariance - covariance).max()
        mean, covariance = new_mean, new_covariance
        if step < _EM_TOLERANCE * max(1.0, np.abs(covariance).max()):
            break
    return mean, covariance, completed
