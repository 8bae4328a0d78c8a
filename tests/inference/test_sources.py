from __future__ import annotations

import json

import cv2
import pytest

from kp_platform.inference.sources import collect_sources, iter_frames
from tests.inference.conftest import write_video


def test_folders_recursively_sorted_with_ids_that_cannot_collide(frames, tmp_path, run_kp,
                                                                 trained_run):
    folder = tmp_path / "shots"
    (folder / "b").mkdir(parents=True)
    (folder / "a").mkdir()
    for name, frame in [("b/x.png", frames[0]), ("a/y.jpg", frames[1]), ("z.png", frames[2])]:
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    write_video(folder / "a" / "clip.avi", frames[:3])
    single = tmp_path / "one.png"
    cv2.imwrite(str(single), frames[3])
    pred = tmp_path / "pred.json"
    code, _, err = run_kp("predict", "--checkpoint", trained_run.last_checkpoint, single, folder,
                          "--out", pred)
    assert code == 0, err
    entries = json.loads(pred.read_text())
    assert [e["image_id"] for e in entries] == list(range(1, 8))
    where = [(e.get("file_name") or e["source"], e.get("frame")) for e in entries]
    assert where == [(str(single), None)] + [(str(folder / "a" / "clip.avi"), i)
                                             for i in range(3)] + [
        (str(folder / "a" / "y.jpg"), None), (str(folder / "b" / "x.png"), None),
        (str(folder / "z.png"), None)]


@pytest.mark.parametrize("setup,message", [
    (lambda p: p.joinpath("a.txt").write_text("x"), "unsupported file type '.txt'"),
    (lambda p: p.joinpath("a.mp4").write_bytes(b"not a video"), "cannot be opened as a video"),
    (lambda p: p.joinpath("a.png").write_bytes(b"not an image"), "cannot be decoded"),
    (lambda p: None, "no such image, video, folder or COCO file"),
])
def test_bad_inputs_are_one_line_errors(setup, message, tmp_path, run_kp, trained_run):
    setup(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    target = tmp_path / (names[0] if names else "missing.png")
    code, _, err = run_kp("predict", "--checkpoint", trained_run.last_checkpoint, target,
                          "--out", tmp_path / "p.json")
    assert code == 2
    assert err.startswith(f"error: {target}: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_two_videos_are_numbered_on_with_their_frame_indices(frames, tmp_path):
    one = write_video(tmp_path / "one.mp4", frames[:2])
    two = write_video(tmp_path / "two.avi", frames[:3])
    sources, rule = collect_sources([one, two])
    assert rule == "sequential"
    read = [(f.image_id, f.frame, f.entry(sources)["source"]) for f in iter_frames(sources, rule)]
    assert read == [(1, 0, str(one)), (2, 1, str(one)), (3, 0, str(two)), (4, 1, str(two)),
                    (5, 2, str(two))]


def test_render_names_stay_unique(frames, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), frames[0])
    sources, _ = collect_sources([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])
    assert [s.name for s in sources] == ["x.png", "2-x.png"]
