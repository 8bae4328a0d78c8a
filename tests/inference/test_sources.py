from __future__ import annotations

import json

import cv2
import pytest

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
