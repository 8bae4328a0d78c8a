from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from kp_platform.data.image_io import read_rgb
from kp_platform.inference.render import draw_detections, legend_box
from tests.inference.conftest import FPS, read_video, write_video


@pytest.fixture(scope="module")
def big_frames(frames) -> list[np.ndarray]:
    """The test frames at 120x144: room for markers outside the legend."""
    return [cv2.resize(f, (144, 120), interpolation=cv2.INTER_LINEAR) for f in frames]


def _detections(entry: dict) -> list[np.ndarray]:
    return [np.asarray(points, dtype=np.float64).reshape(-1, 3)
            for points in entry["detections"].values()]


def test_rendered_video_has_the_frames_the_rate_and_the_markers(sharp_checkpoint, big_frames,
                                                                 run_kp, tmp_path):
    video = write_video(tmp_path / "clip.avi", big_frames)
    code, _, err = run_kp("predict", "--checkpoint", sharp_checkpoint, video, "--out",
                          tmp_path / "pred.json", "--render", tmp_path / "render")
    assert code == 0, err
    out = tmp_path / "render" / "clip.avi"
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    capture.release()
    rendered, original = read_video(out), read_video(video)
    assert len(rendered) == len(original) == len(big_frames)
    entries = json.loads((tmp_path / "pred.json").read_text())
    names = list(entries[0]["detections"])
    box_h, box_w = legend_box(original[0].shape, names)
    drawn_total = 0
    for entry, before, after in zip(entries, original, rendered, strict=True):
        drawn = draw_detections(before, _detections(entry), names)
        legend = np.zeros(before.shape[:2], dtype=bool)
        legend[:box_h, :box_w] = True
        marked = (drawn != before).any(axis=2) & ~legend
        drawn_total += int(marked.sum())
        change = np.abs(after.astype(int) - before.astype(int)).sum(axis=2)
        # Where markers are drawn the video changed far more than the codec noise elsewhere.
        assert change[marked].mean() > 5 * change[~marked & ~legend].mean() + 10
    assert drawn_total > 100


def test_rendered_images_change_only_at_markers_and_legend(sharp_checkpoint, big_frames, run_kp,
                                                           tmp_path):
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.png", folder / "sub" / "b.png"]
    for path, frame in zip(paths, big_frames, strict=False):
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    pred, render = tmp_path / "pred.json", tmp_path / "render"
    code, _, err = run_kp("predict", "--checkpoint", sharp_checkpoint, folder, "--out", pred,
                          "--render", render)
    assert code == 0, err
    entries = json.loads(pred.read_text())
    names = list(entries[0]["detections"])
    for entry, path in zip(entries, paths, strict=True):
        before = read_rgb(path)
        after = read_rgb(render / "shots" / path.relative_to(folder))
        changed = (after != before).any(axis=2)
        box_h, box_w = legend_box(before.shape, names)
        assert changed[:box_h, :box_w].all() or changed[:box_h, :box_w].mean() > 0.9
        np.testing.assert_array_equal(after, draw_detections(before, _detections(entry), names))
        near = np.zeros_like(changed)
        for points in _detections(entry):
            for x, y, _ in points:
                near[max(0, int(y) - 6): int(y) + 8, max(0, int(x) - 6): int(x) + 8] = True
                if y > box_h or x > box_w:
                    assert changed[int(round(y)), int(round(x))]
        near[:box_h, :box_w] = True
        assert not changed[~near].any()


def test_min_score_sets_what_is_written_and_drawn(sharp_checkpoint, big_frames, run_kp,
                                                  tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), cv2.cvtColor(big_frames[0], cv2.COLOR_RGB2BGR))
    scores = {}
    for min_score in ("0", "0.06", "2"):
        pred = tmp_path / f"pred{min_score}.json"
        code, _, err = run_kp("predict", "--checkpoint", sharp_checkpoint, image, "--out", pred,
                              "--render", tmp_path / min_score, "--min-score", min_score)
        assert code == 0, err
        (entry,) = json.loads(pred.read_text())
        scores[min_score] = sorted(p[2] for ps in entry["detections"].values() for p in ps)
    assert scores["2"] == []
    assert scores["0.06"] == [s for s in scores["0"] if s >= 0.06]
    assert 0 < len(scores["0.06"]) < len(scores["0"])
    before = read_rgb(image)
    nothing = read_rgb(tmp_path / "2" / "a.png")
    legend = np.zeros(before.shape[:2], dtype=bool)
    box_h, box_w = legend_box(before.shape, ["a", "b"])
    legend[:box_h] = True
    np.testing.assert_array_equal(nothing[~legend], before[~legend])
