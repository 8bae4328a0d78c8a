from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from kp_platform.inference import Detector, predict_inputs
from kp_platform.inference.sources import collect_sources
from kp_platform.inference.stream import predict_sources
from tests.inference.conftest import read_video


@pytest.fixture(scope="module")
def detector(sharp_checkpoint) -> Detector:
    return Detector.from_checkpoint(sharp_checkpoint, "cpu")


def test_video_frames_predict_like_the_same_frames_saved_as_images(sharp_checkpoint, video,
                                                                   detector, run_kp, tmp_path):
    pred = tmp_path / "pred.json"
    code, out, err = run_kp("predict", "--checkpoint", sharp_checkpoint, video,
                            "--out", pred, "--batch-size", "4")
    assert code == 0, err
    assert re.search(r"^6 frames in [\d.]+ s: [\d.]+ frames/s on cpu at batch size 4$", out,
                     re.MULTILINE), out
    entries = json.loads(pred.read_text())
    decoded = read_video(video)
    assert len(entries) == len(decoded) == 6
    assert [e["image_id"] for e in entries] == list(range(6))  # one video: the frame index
    assert [e["frame"] for e in entries] == list(range(6))
    assert {e["source"] for e in entries} == {str(video)}
    saved = []
    for i, frame in enumerate(decoded):
        saved.append(tmp_path / f"frame{i}.png")
        cv2.imwrite(str(saved[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    as_images = detector.predict(saved, batch_size=4)  # the same batches: the same bits
    assert sum(len(p) for e in entries for p in e["detections"].values()) > 0
    for entry, expected in zip(entries, as_images, strict=True):
        assert list(entry["detections"]) == detector.channel_names
        for name, points in expected.items():
            assert entry["detections"][name] == points.tolist()  # exactly, through JSON


def test_batches_and_loader_workers_equal_batch_1(detector, video, frames, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    sources, rule = collect_sources([video, folder])
    runs = [list(predict_sources(detector, sources, rule, batch_size=b, workers=w))
            for b, w in [(1, 0), (16, 0), (4, 2)]]
    assert len(runs[0]) == 12
    assert sum(len(p) for p in runs[0][0]["detections"].values()) > 0
    for other in runs[1:]:
        assert [e["image_id"] for e in other] == [e["image_id"] for e in runs[0]]
        for a, b in zip(runs[0], other, strict=True):
            for name in detector.channel_names:
                assert a["detections"][name].shape == b["detections"][name].shape
                np.testing.assert_allclose(a["detections"][name], b["detections"][name],
                                           rtol=0, atol=1e-3)


def test_single_coco_file_keeps_its_ids(detector, synth_data):
    entries = list(predict_inputs(detector, [synth_data["val"]], batch_size=3))
    ids = [e["image_id"] for e in entries]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert all("file_name" in e for e in entries)
