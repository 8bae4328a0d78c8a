"""`kp data import`: tiny DeepLabCut, SLEAP, Label Studio and YOLO projects, each written in the
tool's own format, imported and compared with their source labels; and untrusted input refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
from PIL import Image

NAN = float("nan")


def write_png(path: Path, width: int, height: int, seed: int = 0, gray: bool = False
              ) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width) if gray else (height, width, 3)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def imported(run_kp, src: Path, out: Path, *args: str) -> dict:
    """Runs `kp data import`, checks its output and `kp data check`; the COCO dict."""
    code, stdout, stderr = run_kp("data", "import", src, out, *args)
    assert code == 0, stderr
    assert "pixel convention: " in stdout and f"kp data check {out / 'annotations.json'}" in stdout
    code, _, stderr = run_kp("data", "check", out / "annotations.json")
    assert code == 0, stderr
    return json.loads((out / "annotations.json").read_text())


def by_file(coco: dict) -> dict[str, tuple[dict, list[dict]]]:
    """file_name -> (image record, its annotations)."""
    return {img["file_name"]: (img, [a for a in coco["annotations"] if a["image_id"] == img["id"]])
            for img in coco["images"]}


def expect(ann: dict, points: list[tuple[float, float, int]], shift: float = 0.0) -> None:
    """`ann`'s keypoints are `points` (x, y, v in the source's pixels) moved by `shift`."""
    want = []
    for x, y, v in points:
        want += [x + shift, y + shift, v] if v else [0, 0, 0]
    assert ann["keypoints"] == pytest.approx(want, abs=1e-6)
    assert ann["num_keypoints"] == sum(1 for *_, v in points if v)


# --- DeepLabCut / Lightning Pose -----------------------------------------------------------

DLC_SINGLE = """scorer,,,me,me,me,me,me,me
bodyparts,,,snout,snout,tail,tail,ear,ear
coords,,,x,y,x,y,x,y
labeled-data,video1,img000.png,12.25,3.5,,,1.125,2
labeled-data,video1,img001.png,5,6,7.75,8.0625,30.5,20.25
"""


def dlc_project(root: Path, rows: str = DLC_SINGLE) -> Path:
    folder = root / "labeled-data" / "video1"
    write_png(folder / "img000.png", 32, 24, 0)
    write_png(folder / "img001.png", 32, 24, 1)
    csv = folder / "CollectedData_me.csv"
    csv.write_text(rows)
    return csv


def test_dlc_single_animal(tmp_path: Path, run_kp) -> None:
    csv = dlc_project(tmp_path / "proj")
    coco = imported(run_kp, csv, tmp_path / "out")
    # the CSV's body-part order (sleap-io would sort it)
    assert coco["categories"] == [{"id": 1, "name": "animal", "supercategory": "animal",
                                   "keypoints": ["snout", "tail", "ear"]}]
    images = by_file(coco)
    img, (ann,) = images["images/labeled-data/video1/img000.png"]
    assert (img["width"], img["height"]) == (32, 24)
    expect(ann, [(12.25, 3.5, 2), (0, 0, 0), (1.125, 2.0, 2)])  # DLC: pixel centres, no shift
    _, (ann,) = images["images/labeled-data/video1/img001.png"]
    expect(ann, [(5, 6, 2), (7.75, 8.0625, 2), (30.5, 20.25, 2)])
    copied = Image.open(tmp_path / "out/images/labeled-data/video1/img001.png")
    original = Image.open(csv.parent / "img001.png")
    assert np.array_equal(np.asarray(copied), np.asarray(original))
    again = imported(run_kp, tmp_path / "proj", tmp_path / "out2")  # the project folder
    assert again["annotations"] == coco["annotations"] and again["images"] == coco["images"]


def test_dlc_row_keeps_its_own_image(tmp_path: Path, run_kp) -> None:
    """sleap-io falls back to a file of the same name next to the CSV: refused, not swapped."""
    csv = dlc_project(tmp_path / "proj", DLC_SINGLE.replace("video1,img000", "video2,img000"))
    write_png(tmp_path / "proj/labeled-data/video2/img000.png", 32, 24, 9)
    code, _, stderr = run_kp("data", "import", csv, tmp_path / "out")
    assert code == 2 and stderr.startswith(f"error: {csv}: sleap-io matched rows to other")


def test_dlc_multi_animal_folder(tmp_path: Path, run_kp) -> None:
    """Lightning Pose style: the CSV at the project's top, one path column, individuals."""
    root = tmp_path / "lp"
    write_png(root / "labeled-data/v/f10.png", 40, 30, 2)
    write_png(root / "labeled-data/v/f2.png", 40, 30, 3)
    (root / "CollectedData.csv").write_text(
        "scorer,me,me,me,me,me,me,me,me\n"
        "individuals,m1,m1,m1,m1,m2,m2,m2,m2\n"
        "bodyparts,tail,tail,nose,nose,tail,tail,nose,nose\n"
        "coords,x,y,x,y,x,y,x,y\n"
        "labeled-data/v/f10.png,12.25,3.5,,,1.5,2.75,30.125,29\n"
        "labeled-data/v/f2.png,,,,,,,,\n"
    )
    code, stdout, _ = run_kp("data", "import", root, tmp_path / "out", "--format", "dlc")
    assert code == 0 and "DeepLabCut" in stdout and "no shift" in stdout
    coco = imported(run_kp, root, tmp_path / "out2")  # auto-detected from the folder
    assert coco["categories"][0]["keypoints"] == ["tail", "nose"]
    images = by_file(coco)
    _, anns = images["images/labeled-data/v/f10.png"]
    expect(anns[0], [(12.25, 3.5, 2), (0, 0, 0)])
    expect(anns[1], [(1.5, 2.75, 2), (30.125, 29.0, 2)])
    assert images["images/labeled-data/v/f2.png"][1] == []  # nothing labelled: a negative image


# --- SLEAP ---------------------------------------------------------------------------------

def sleap_project(root: Path, monkeypatch: pytest.MonkeyPatch, embed: bool,
                  files: list[str] | None = None) -> tuple[Path, list[np.ndarray]]:
    pixels = [write_png(root / f"frames/f{i}.png", 30, 20, 10 + i) for i in range(3)]
    monkeypatch.chdir(root)  # the video keeps the relative paths it is given
    video = sio.Video.from_filename(files or [f"frames/f{i}.png" for i in range(3)])
    fly = sio.Skeleton(["head", "thorax", "abdomen"], name="fly")
    first = sio.Instance.from_numpy(np.array([[12.25, 3.5], [NAN, NAN], [7.125, 9.0]]), fly)
    second = sio.Instance.from_numpy(np.array([[1.5, 2.5], [3.0, 4.0], [28.75, 19.0]]), fly)
    second.points["visible"][1] = False  # SLEAP's "not visible": not a labelled position
    predicted = sio.PredictedInstance.from_numpy(np.ones((3, 2)), fly, point_scores=np.ones(3),
                                                 score=1.0)
    labels = sio.Labels([
        sio.LabeledFrame(video=video, frame_idx=0, instances=[first, second]),
        sio.LabeledFrame(video=video, frame_idx=1, instances=[predicted]),
        sio.LabeledFrame(video=video, frame_idx=2, instances=[sio.Instance.from_numpy(
            np.array([[5.0, 6.0], [NAN, NAN], [NAN, NAN]]), fly)]),
    ])
    path = root / ("labels.pkg.slp" if embed else "labels.slp")
    if embed:
        sio.save_file(labels, str(path), embed="user")
    else:
        sio.save_file(labels, str(path))
    monkeypatch.chdir("/")
    return path, pixels


@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "image-list"])
def test_sleap(tmp_path: Path, run_kp, monkeypatch: pytest.MonkeyPatch, embed: bool) -> None:
    slp, pixels = sleap_project(tmp_path / "proj", monkeypatch, embed)
    code, stdout, _ = run_kp("data", "import", slp, tmp_path / "out")
    assert code == 0 and "skipped 1 frame(s) with predictions only" in stdout
    assert "SLEAP" in stdout and "no shift" in stdout
    coco = imported(run_kp, slp, tmp_path / "out2")
    assert [c["keypoints"] for c in coco["categories"]] == [["head", "thorax", "abdomen"]]
    assert coco["categories"][0]["name"] == "fly"
    names = ["images/video0/000000.png", "images/video0/000002.png"] if embed else \
        ["images/frames/f0.png", "images/frames/f2.png"]
    images = by_file(coco)
    assert sorted(images) == names
    img, anns = images[names[0]]
    assert (img["width"], img["height"]) == (30, 20)
    expect(anns[0], [(12.25, 3.5, 2), (0, 0, 0), (7.125, 9.0, 2)])
    expect(anns[1], [(1.5, 2.5, 2), (0, 0, 0), (28.75, 19.0, 2)])
    expect(images[names[1]][1][0], [(5.0, 6.0, 2), (0, 0, 0), (0, 0, 0)])
    for name, source in zip(names, (pixels[0], pixels[2]), strict=True):
        written = np.asarray(Image.open(tmp_path / "out2" / name))
        assert np.array_equal(written, source)  # embedded frames: lossless PNG


# --- Label Studio --------------------------------------------------------------------------

def ls_point(rid: str, name: str, x: float, y: float, size: tuple[int, int]) -> dict:
    """A keypointlabels result at Label Studio's pixel position (x, y): percentages of the image
    size, 0 and 100 at its edges, so the centre of pixel column j is at j + 0.5 once scaled."""
    width, height = size
    return {"id": rid, "type": "keypointlabels", "from_name": "kp", "to_name": "image",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": x / width * 100, "y": y / height * 100, "width": 0.6,
                      "keypointlabels": [name]}}


def ls_project(root: Path, image: str = "images/a.png") -> Path:
    write_png(root / "images/a.png", 40, 20, 4)
    write_png(root / "images/b.png", 25, 50, 5)
    tasks = [
        {"id": 1, "data": {"image": image}, "annotations": [{"id": 1, "result": [
            ls_point("p1", "nose", 12.75, 4.0, (40, 20)),
            ls_point("p2", "tail", 30.625, 19.5, (40, 20)),
        ]}]},
        {"id": 2, "data": {"image": "/data/local-files/?d=images/b.png"},
         "annotations": [{"id": 2, "result": [
             ls_point("p3", "ear", 0.5, 49.5, (25, 50)),
             ls_point("p4", "nose", 24.9, 0.1234567, (25, 50)),
         ]}]},
        {"id": 3, "data": {"image": "images/a.png"}, "annotations": []},  # not labelled yet
    ]
    path = root / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_labelstudio(tmp_path: Path, run_kp) -> None:
    src = ls_project(tmp_path / "ls")
    code, stdout, _ = run_kp("data", "import", src, tmp_path / "out")
    assert code == 0 and "skipped 1 task(s) without annotations" in stdout
    assert "Label Studio" in stdout and "-0.5" in stdout
    coco = imported(run_kp, src, tmp_path / "out2")
    assert coco["categories"][0]["keypoints"] == ["nose", "tail", "ear"]  # first seen
    images = by_file(coco)
    img, (ann,) = images["images/images/a.png"]
    assert (img["width"], img["height"]) == (40, 20)
    expect(ann, [(12.75, 4.0, 2), (30.625, 19.5, 2), (0, 0, 0)], shift=-0.5)
    img, (ann,) = images["images/images/b.png"]
    assert (img["width"], img["height"]) == (25, 50)
    expect(ann, [(24.9, 0.1234567, 2), (0, 0, 0), (0.5, 49.5, 2)], shift=-0.5)


# --- Ultralytics YOLO ----------------------------------------------------------------------

def yolo_project(root: Path, train: str = "images/train") -> Path:
    write_png(root / "images/train/a.png", 40, 20, 6)
    write_png(root / "images/train/empty.png", 16, 16, 7)  # no label file: a negative image
    write_png(root / "images/val/b.png", 50, 25, 8, gray=True)
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    # fractions of a.png's 40x20: (12.75, 4) v=2, (30.625, 10.5) v=1 (occluded), a v=0 point
    (root / "labels/train/a.txt").write_text(
        f"0 0.5 0.5 0.9 0.9 {12.75 / 40} {4.0 / 20} 2 {30.625 / 40} {10.5 / 20} 1 0 0 0\n\n"
        f"1 0.5 0.5 0.2 0.2 {1.0 / 40} {1.0 / 20} 2 0.5 0.5 2 {39.5 / 40} {19.5 / 20} 2\n")
    (root / "labels/val/b.txt").write_text("0 0.5 0.5 1 1 0.25 0.75 2 0 0 0 0.123456 0.5 1\n")
    (root / "data.yaml").write_text(
        f"path: .\ntrain: {train}\nval: images/val\nkpt_shape: [3, 3]\n"
        "names:\n  0: mouse\n  1: rat\n"
        "kpt_names:\n  0: [nose, tail, ear]\n  1: [nose, tail, ear]\n")
    return root


def test_yolo(tmp_path: Path, run_kp) -> None:
    root = yolo_project(tmp_path / "yolo")
    code, stdout, _ = run_kp("data", "import", root / "data.yaml", tmp_path / "out")
    assert code == 0 and "Ultralytics" in stdout and "-0.5" in stdout
    assert "(2 occluded)" in stdout
    coco = imported(run_kp, root, tmp_path / "out2")
    assert [(c["name"], c["keypoints"]) for c in coco["categories"]] == [
        ("mouse", ["nose", "tail", "ear"]), ("rat", ["nose", "tail", "ear"])]
    images = by_file(coco)
    img, (mouse, rat) = images["images/images/train/a.png"]
    assert (img["width"], img["height"]) == (40, 20)
    assert (mouse["category_id"], rat["category_id"]) == (1, 2)
    expect(mouse, [(12.75, 4.0, 2), (30.625, 10.5, 1), (0, 0, 0)], shift=-0.5)
    expect(rat, [(1.0, 1.0, 2), (20.0, 10.0, 2), (39.5, 19.5, 2)], shift=-0.5)
    assert images["images/images/train/empty.png"][1] == []
    img, (ann,) = images["images/images/val/b.png"]
    assert (img["width"], img["height"]) == (50, 25)
    expect(ann, [(0.25 * 50, 0.75 * 25, 2), (0, 0, 0), (0.123456 * 50, 12.5, 1)], shift=-0.5)


# --- untrusted input -----------------------------------------------------------------------

def project_naming(fmt: str, root: Path, ref: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of `fmt` whose first image (YOLO: train folder) is `ref`; the file to import."""
    if fmt == "dlc":
        rows = f"scorer,me,me\nbodyparts,snout,snout\ncoords,x,y\n{ref},1.5,2\n" \
            "labeled-data/video1/img001.png,3,4\n"
        return dlc_project(root, rows)
    if fmt == "labelstudio":
        return ls_project(root, image=ref)
    if fmt == "sleap":
        return sleap_project(root, monkeypatch, embed=False,
                             files=[ref, "frames/f1.png", "frames/f2.png"])[0]
    return yolo_project(root, train=ref) / "data.yaml"


@pytest.mark.parametrize("fmt", ["dlc", "sleap", "labelstudio", "yolo"])
@pytest.mark.parametrize("where, reason", [("dotdot", "outside"), ("absolute", "absolute path"),
                                           ("symlink", "outside"), ("missing", "not found")])
def test_images_outside_or_missing_refused(
    tmp_path: Path, run_kp, monkeypatch: pytest.MonkeyPatch, fmt: str, where: str, reason: str
) -> None:
    """An image path that leaves the project (../, absolute, a symlink to outside) or names no
    file: one error line naming the source file and the path, exit 2, nothing written."""
    secret = tmp_path / "secret"  # outside the project, and present
    write_png(secret / "x.png", 32, 24)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "link").symlink_to(secret)
    refs = {"dotdot": "../secret/x.png", "absolute": str(secret / "x.png"),
            "symlink": "link/x.png", "missing": "frames/nope.png"}
    if fmt == "yolo":  # YOLO names image folders
        refs = {"dotdot": "../secret", "absolute": str(secret), "symlink": "link",
                "missing": "images/nothing"}
    src = project_naming(fmt, root, refs[where], monkeypatch)
    out = tmp_path / "out"
    code, stdout, stderr = run_kp("data", "import", src, out)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: {src}: "), stderr
    assert reason in stderr and refs[where] in stderr, stderr
    assert not out.exists()


def test_nonempty_out_refused_and_untouched(tmp_path: Path, run_kp) -> None:
    csv = dlc_project(tmp_path / "proj")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run_kp("data", "import", csv, out)
    assert code == 2 and stderr == f"error: {out}: exists and is not an empty folder; " \
        "refusing to overwrite it\n"
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() \
        == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    imported(run_kp, csv, empty)  # an empty folder is fine


@pytest.mark.parametrize("name, content", [
    ("labels.slp", b"not an HDF5 file"),
    ("CollectedData_x.csv", b"\x00\x01 garbage, , ,\n1,2\n"),
    ("export.json", b'{"not": "a list"}'),
    ("export2.json", b'[{"data": {"image": "a.png"}, "annotations": [{"result": 3}]}]'),
    ("data.yaml", b"names: [a]\n"),
    ("labels.txt", b"hello"),
])
def test_garbled_or_unknown_input(tmp_path: Path, run_kp, name: str, content: bytes) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    write_png(tmp_path / "a.png", 8, 8)
    code, stdout, stderr = run_kp("data", "import", src, tmp_path / "out")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: {src}: "), stderr
    assert not (tmp_path / "out").exists()


def test_yolo_bad_label_line_names_the_file(tmp_path: Path, run_kp) -> None:
    root = yolo_project(tmp_path / "yolo")
    (root / "labels/val/b.txt").write_text("0 0.5 0.5 1 1 0.25 0.75\n")
    code, _, stderr = run_kp("data", "import", root, tmp_path / "out")
    assert code == 2
    assert stderr.startswith(f"error: {root / 'labels/val/b.txt'}: line 1: expected a class")


def test_help(run_kp) -> None:
    code, out, _ = run_kp("data", "import", "--help")
    assert code == 0 and out.startswith("usage: kp data import")
    assert "CollectedData*.csv" in out and "never overwritten" in out and "--format" in out
