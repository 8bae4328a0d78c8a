"""`kp data import`: a labelling tool's project turned into a COCO keypoint dataset.

DeepLabCut / Lightning Pose CSVs, SLEAP ``.slp`` files and Label Studio JSON exports are read with
sleap-io into its ``Labels``; Ultralytics YOLO pose sets by ``_read_yolo`` (sleap-io 0.9's reader
finds no labels in the standard ``images/<split>`` + ``labels/<split>`` layout, keeps float32 and
makes v=1 a v=2). All become ``_Frame``s, written by ``_write`` as ``OUT/annotations.json`` +
``OUT/images/<the image's path in the project>``.

Pixel conventions (this project: the centre of pixel (row i, column j) at (x=j, y=i)), applied
by CONVENTIONS: DeepLabCut's GUIs (napari-deeplabcut, matplotlib's ``imshow`` before it) and
SLEAP (sleap-io moves files older than SLP format 1.1 by -0.5 itself) put pixel centres at whole
numbers: no shift. Label Studio's percentages and Ultralytics' fractions of the image size have
0 and 100 (1) at the image's edges, so once scaled the centre of pixel j is at j + 0.5: -0.5.
(Ambiguous for YOLO sets made by Ultralytics' COCO converter, which divides COCO keypoints by
the size without a shift: we follow the format's definition.)

Only YOLO's v=1 becomes an occluded keypoint: a "not visible" SLEAP node has no labelled position
(SLEAP trains on it as missing); DeepLabCut and Label Studio have no such state. Every image a
source names must lie in the project's folder (after ``..`` and symlinks): an absolute path, a
path outside, a missing or unreadable image and a garbled file are InputErrors.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from kp_platform.data.image_io import displayed_size
from kp_platform.errors import InputError, first_line, one_line
from kp_platform.files import read_json, read_text

# format -> (the tool's file, what to add to its pixel coordinates, the line printed about it)
CONVENTIONS = {
    "dlc": ("DeepLabCut CSV", 0.0,
            "DeepLabCut labels pixel centres at whole numbers ('center'): no shift"),
    "sleap": ("SLEAP file", 0.0, "SLEAP (sleap-io, SLP format >= 1.1) puts pixel centres at whole "
              "numbers ('center'): no shift"),
    "labelstudio": ("Label Studio JSON", -0.5, "Label Studio writes percentages of the image "
                    "size, 0 and 100 at its edges ('corner' once scaled): shifted by -0.5 px"),
    "yolo": ("YOLO data.yaml", -0.5, "Ultralytics writes fractions of the image size, 0 and 1 at "
             "its edges ('corner' once scaled): shifted by -0.5 px"),
}
YOLO_IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
Categories = dict[tuple[str, tuple[str, ...]], int]  # (name, keypoint names) -> index


@dataclass
class _Frame:
    """An image, from `file` (copied) or `read` (pixels written as PNG), and its instances as
    (category index, (K, 3) x, y, v in the source's pixel convention)."""

    name: str
    file: Path | None = None
    read: Callable[[], np.ndarray] | None = None
    instances: list[tuple[int, np.ndarray]] = field(default_factory=list)


@dataclass
class ImportResult:
    """What `import_dataset` wrote: counts, categories (name -> keypoints), notes to print."""

    path: Path
    convention: str
    images: int
    instances: int
    keypoints: int
    occluded: int
    categories: dict[str, list[str]]
    notes: list[str]


def detect_format(src: Path) -> str:
    """`src`'s format: a ``.slp``, ``.csv``, ``.json``, ``.yaml``, or a folder holding
    ``data.yaml`` (YOLO) or ``CollectedData*.csv`` files (DeepLabCut).

    Raises:
        InputError: `src` is missing or none of these.
    """
    if not src.exists():
        raise InputError("not found", str(src))
    if src.is_dir():
        if (src / "data.yaml").is_file() or _dlc_csvs(src):
            return "yolo" if (src / "data.yaml").is_file() else "dlc"
        raise InputError("cannot tell the format: neither data.yaml (YOLO) nor CollectedData*.csv "
                         "(DeepLabCut) here; name the .slp or .json file", str(src))
    suffixes = {".slp": "sleap", ".csv": "dlc", ".json": "labelstudio", ".yaml": "yolo",
                ".yml": "yolo"}
    if src.suffix.lower() not in suffixes:
        raise InputError(f"cannot tell the format from the suffix {src.suffix!r}: expected .slp, "
                         ".csv, .json or data.yaml (or pass --format)", str(src))
    return suffixes[src.suffix.lower()]


def import_dataset(src: str | Path, out: str | Path, fmt: str = "auto") -> ImportResult:
    """Reads a labelling tool's project and writes ``out/annotations.json`` + ``out/images/``.

    Args:
        src: A ``.slp``; a DeepLabCut ``CollectedData*.csv`` or a folder with them (or with
            ``labeled-data/*/`` holding them); a Label Studio JSON export; a YOLO ``data.yaml``
            or its folder.
        out: A new or empty folder; anything else is refused, never overwritten.
        fmt: ``"auto"`` or a key of CONVENTIONS.

    Raises:
        InputError: naming the file and the item that is wrong.
    """
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not an empty folder; refusing to overwrite it", str(out))
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt not in CONVENTIONS:
        raise InputError(f"unknown format {fmt!r}; expected auto or one of {list(CONVENTIONS)}")
    if not src.exists():
        raise InputError("not found", str(src))
    tool, shift, convention = CONVENTIONS[fmt]
    reader = {"dlc": _read_dlc, "sleap": _read_sleap, "labelstudio": _read_labelstudio,
              "yolo": _read_yolo}[fmt]
    categories: Categories = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frames, notes = reader(src, categories)
        except InputError:
            raise
        except Exception as exc:  # sleap-io, pandas or yaml on a garbled file: one line
            raise InputError(f"cannot read as a {tool}: {first_line(exc)}", str(src)) from None
    if not frames:
        raise InputError(f"no labelled images found in this {tool}", str(src))
    notes += dict.fromkeys(one_line(str(w.message)) for w in caught  # sleap-io's warnings
                           if issubclass(w.category, UserWarning))
    names = [name for name, _ in categories]  # one category per skeleton: names made distinct
    names = [f"{n}_{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    counts = _write(frames, names, [list(k) for _, k in categories], out, shift,
                    {"source": str(src), "format": fmt, "pixel_shift": shift,
                     "pixel_convention": convention})
    return ImportResult(out / "annotations.json", convention, **counts, notes=notes,
                        categories={n: list(k) for n, (_, k) in zip(names, categories,
                                                                    strict=True)})


def _local(root: Path, ref: str, src: Path, item: str, folder: bool = False) -> Path:
    """``root / ref``, refused when absolute, outside `root` (after ``..`` and symlinks) or
    missing: an untrusted project must not make us read, and copy, files from elsewhere."""
    where = f"the project folder {str(root)!r}"
    if "\x00" in ref or PurePosixPath(ref).is_absolute() or PureWindowsPath(ref).anchor:
        raise InputError(f"{item}: is an absolute path; it must be relative to {where}", str(src))
    path = root / ref
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise InputError(f"{item}: resolves outside {where}", str(src))
    if not (path.is_dir() if folder else path.is_file()):
        raise InputError(f"{item}: {str(path)!r} not found", str(src))
    return path


def _name(root: Path, path: Path) -> str:
    """The image's path in the project (symlinks resolved), kept under OUT/images/."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def _image_size(path: Path, src: Path, item: str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), as `kp data check` reads it."""
    try:
        with Image.open(path) as handle:
            return displayed_size(handle)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        raise InputError(f"{item}: cannot read the image {str(path)!r}", str(src)) from None


def _from_labels(labels: Any, image_of: Callable[[Any], _Frame], categories: Categories,
                 default_name: str, order: list[str] | None = None) -> tuple[list[_Frame], int]:
    """A sleap-io ``Labels``' frames, user instances only (predictions are not labels); a missing
    or not-visible node (NaN in ``Instance.numpy()``) is not labelled (v=0), the others v=2.

    Args:
        labels: sleap-io ``Labels``.
        image_of: Makes a labelled frame's (empty) `_Frame`: its image file or pixels.
        categories: Grows by each new skeleton (name, keypoints).
        default_name: The category's name for a skeleton without one.
        order: The keypoints' order, when the source's is not the skeleton's.

    Returns:
        The frames, and how many were left out for holding predictions only.
    """
    frames, predicted_only = [], 0
    for lf in labels.labeled_frames:
        if lf.instances and not lf.user_instances:
            predicted_only += 1
            continue
        frame = image_of(lf)
        for inst in lf.user_instances:
            nodes = inst.skeleton.node_names
            xy = inst.numpy()[[nodes.index(n) for n in order or nodes]]
            key = (inst.skeleton.name or default_name, tuple(order or nodes))
            v = np.where(np.isfinite(xy).all(axis=1), 2.0, 0.0)
            frame.instances.append((categories.setdefault(key, len(categories)),
                                    np.column_stack([xy, v])))
        frames.append(frame)
    return frames, predicted_only


def _dlc_csvs(folder: Path) -> list[Path]:
    return [*sorted(folder.glob("CollectedData*.csv")),
            *sorted(folder.glob("labeled-data/*/CollectedData*.csv"))]


def _read_dlc(src: Path, categories: Categories) -> tuple[list[_Frame], list[str]]:
    """DeepLabCut / Lightning Pose CSVs, read by sleap-io. Image paths are relative to the
    project folder: the one holding ``labeled-data/`` for a CSV in ``labeled-data/<video>/``,
    else the CSV's folder."""
    import sleap_io as sio
    from sleap_io.io.dlc import _read_dlc_dataframe  # sleap-io's CSV reading: paths, column order

    frames: list[_Frame] = []
    for csv in [src] if src.is_file() else _dlc_csvs(src):
        root = csv.parents[2] if csv.parent.parent.name == "labeled-data" else csv.parent
        df, _ = _read_dlc_dataframe(csv)
        paths = [_local(root, str(ref), csv, f"image {str(ref)!r}") for ref in df.index]
        labels = sio.load_dlc(str(csv), config=False)  # no config.yaml: read only the CSV
        # sleap-io tries a bare file name next to the CSV too, and numbers a folder's images by
        # the digits in their names: every row must still get the image it names.
        files = [Path(lf.video.filename[lf.frame_idx]).resolve() for lf in labels.labeled_frames]
        if files != [p.resolve() for p in paths]:
            raise InputError("sleap-io matched rows to other image files than they name "
                             f"(relative to {str(root)!r})", str(csv))
        order = list(dict.fromkeys(c[1] for c in df.columns if c[-1] == "x"))  # sleap-io sorts
        frames += _from_labels(labels, lambda lf, root=root: _Frame(
            _name(root, Path(lf.video.filename[lf.frame_idx])),
            Path(lf.video.filename[lf.frame_idx])), categories, "animal", order)[0]
    return frames, []


def _read_sleap(src: Path, categories: Categories) -> tuple[list[_Frame], list[str]]:
    """A ``.slp`` read by sleap-io: frames embedded in it (``.pkg.slp``), or image lists or
    videos relative to its folder, opened only once found inside it."""
    import sleap_io as sio

    labels = sio.load_slp(str(src), open_videos=False)
    readers: dict[int, Any] = {}
    index = {id(video): k for k, video in enumerate(labels.videos)}

    def image_of(lf: Any) -> _Frame:
        video, k, i = lf.video, index[id(lf.video)], lf.frame_idx
        if isinstance(video.filename, list):
            if not 0 <= i < len(video.filename):
                raise InputError(f"video {k}: frame {i} is not in its image list", str(src))
            ref = str(video.filename[i])
            path = _local(src.parent, ref, src, f"video {k} image {ref!r}")
            return _Frame(_name(src.parent, path), path)
        if k not in readers and Path(video.filename).resolve() == src.resolve():
            video.open()  # frames embedded in the .slp itself
            readers[k] = video
        elif k not in readers:
            path = _local(src.parent, str(video.filename), src, f"video {k} {video.filename!r}")
            readers[k] = sio.Video.from_filename(
                str(path), dataset=video.backend_metadata.get("dataset"))
        return _Frame(f"video{k}/{i:06d}.png", read=lambda: readers[k][i])

    frames, skipped = _from_labels(labels, image_of, categories, "animal")
    return frames, [f"skipped {n} frame(s) with predictions only" for n in [skipped] if n]


def _labelstudio_ref(task: dict, src: Path, item: str) -> str:
    """The task's image, relative to the JSON's folder. Label Studio's own URLs map to a path:
    ``/data/local-files/?d=P`` to ``P``, ``/data/upload/N/F`` to ``upload/N/F`` (its
    ``media/upload`` folder copied next to the JSON); other URLs are refused."""
    data = task["data"] if isinstance(task.get("data"), dict) else {}
    texts = [v for v in data.values() if isinstance(v, str)]
    ref = data.get("image", texts[0] if len(texts) == 1 else None)
    if not isinstance(ref, str) or "://" in ref:
        raise InputError(f"{item}: no image file in data.image ({ref!r})", str(src))
    if ref.startswith("/data/local-files/"):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(ref).query).get("d", [ref])[0]
    return ref.removeprefix("/data/") if ref.startswith("/data/upload/") else ref


def _read_labelstudio(src: Path, categories: Categories) -> tuple[list[_Frame], list[str]]:
    """A Label Studio JSON export (a list of tasks), parsed by sleap-io's ``parse_tasks``.

    sleap-io's ``load_labelstudio`` reads only its own exports (it needs a ``meta.video`` that
    Label Studio does not write) and orders the skeleton as a Python set: each task gets its
    checked image as ``meta.video`` here, and the skeleton is the labels in the order first seen.
    """
    import sleap_io as sio
    from sleap_io.io import labelstudio

    tasks = read_json(src)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise InputError("expected a list of tasks (Label Studio's JSON export)", str(src))
    prepared, nodes, names, skipped = [], {}, {}, 0
    for n, task in enumerate(tasks):
        item = f"task {task.get('id', n + 1)}"
        key = "annotations" if "annotations" in task else "completions"
        if not task.get(key):
            skipped += 1
            continue
        ref = _labelstudio_ref(task, src, item)
        path = _local(src.parent, ref, src, f"{item} image {ref!r}")
        size = _image_size(path, src, f"{item} image {ref!r}")
        for result in task[key][0]["result"]:
            if result.get("type") == "keypointlabels":
                nodes.update(dict.fromkeys(result["value"]["keypointlabels"]))
                seen = (result.get("original_width"), result.get("original_height"))
                if seen != size:
                    raise InputError(f"{item}: Label Studio saw {ref!r} as {seen[0]}x{seen[1]}, "
                                     f"the file is {size[0]}x{size[1]}", str(src))
        names[path.resolve()] = _name(src.parent, path)
        prepared.append({**task, "meta": {"video": {"filename": str(path), "frame_idx": 0,
                                                    "shape": None}}})
    labels = labelstudio.parse_tasks(prepared, sio.Skeleton(list(nodes)))

    def image_of(lf: Any) -> _Frame:
        file = lf.video.filename[0] if isinstance(lf.video.filename, list) else lf.video.filename
        return _Frame(names[Path(file).resolve()], Path(file))

    frames = _from_labels(labels, image_of, categories, "object")[0]
    return frames, [f"skipped {n} task(s) without annotations" for n in [skipped] if n]


def _read_yolo(src: Path, categories: Categories) -> tuple[list[_Frame], list[str]]:
    """An Ultralytics pose set: ``data.yaml`` (``kpt_shape``, ``names``, optional ``kpt_names``,
    ``train``/``val``/``test`` image folders); an image's labels are at its path with the last
    ``images`` replaced by ``labels`` and ``.txt``: ``class cx cy w h`` + ``x y [v]`` per
    keypoint, as fractions of the image size. One category per class."""
    yaml_path = src / "data.yaml" if src.is_dir() else src
    root, frames = yaml_path.parent, []
    config = yaml.safe_load(read_text(yaml_path))
    shape = config.get("kpt_shape") if isinstance(config, dict) else None
    names = config.get("names") if isinstance(config, dict) else None
    names = dict(enumerate(names)) if isinstance(names, list) else names
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) for s in shape)
            and shape[0] > 0 and shape[1] in (2, 3) and isinstance(names, dict) and names):
        raise InputError("not a YOLO pose data.yaml: expected kpt_shape [keypoints, 2 or 3] and "
                         "names", str(yaml_path))
    (n_kpt, ndim), kpt_names = shape, config.get("kpt_names") or config.get("node_names")
    cat_of = {}
    for c, name in names.items():
        kps = kpt_names.get(c) if isinstance(kpt_names, dict) else kpt_names
        if not (isinstance(kps, list) and len(kps) == n_kpt):
            kps = [f"kpt{k}" for k in range(n_kpt)]
        cat_of[c] = categories.setdefault((str(name), tuple(map(str, kps))), len(categories))

    def read_frame(image: Path) -> _Frame:
        rel = image.relative_to(root).as_posix()
        frame = _Frame(_name(root, _local(root, rel, yaml_path, f"image {rel!r}")), image)
        parts = list(PurePosixPath(frame.name).parts)
        if "images" in parts[:-1]:
            parts[len(parts) - 2 - parts[-2::-1].index("images")] = "labels"
        label_rel = PurePosixPath(*parts).with_suffix(".txt").as_posix()
        if not (root / label_rel).exists():
            return frame  # no label file: an image without objects
        label = _local(root, label_rel, yaml_path, f"labels {label_rel!r}")
        width, height = _image_size(image, yaml_path, f"image {rel!r}")
        for lineno, line in enumerate(read_text(label).splitlines(), 1):
            if not line.strip():
                continue
            try:
                values = np.array(line.split(), dtype=np.float64)
            except ValueError:
                values = np.array([np.nan])
            kp = values[5:].reshape(-1, ndim) if len(values) == 5 + n_kpt * ndim else None
            v = np.full(n_kpt, 2.0) if ndim == 2 or kp is None else kp[:, 2]
            if kp is None or not np.isfinite(values).all() or not np.isin(v, (0, 1, 2)).all() \
                    or int(values[0]) not in cat_of:
                raise InputError(f"line {lineno}: expected a class of names and {4 + n_kpt * ndim}"
                                 f" numbers (box, {n_kpt} keypoints x {ndim}; v 0, 1 or 2)",
                                 str(label))
            points = np.column_stack([kp[:, 0] * width, kp[:, 1] * height, v])
            frame.instances.append((cat_of[int(values[0])], points))
        return frame

    # Ultralytics resolves a relative 'path' against a datasets folder of its settings, unknown
    # here: splits are looked up from data.yaml's folder unless 'path' is a folder inside it.
    prefix, notes = str(config.get("path") or "."), []
    if not ((root / prefix).is_dir() and (root / prefix).resolve().is_relative_to(root.resolve())):
        notes.append(f"data.yaml 'path' {prefix!r} ignored: splits are looked up in {str(root)!r}")
        prefix = "."
    for split in ("train", "val", "test"):
        entries = config.get(split) or []
        for entry in map(str, [entries] if isinstance(entries, str) else entries):
            if not (root / prefix / entry).exists() and entry.startswith("../"):
                entry = entry[3:]  # as Ultralytics does, for Roboflow's "../train/images"
            ref = str(PurePosixPath(prefix) / entry)  # an absolute entry stays absolute
            folder = _local(root, ref, yaml_path, f"{split} {entry!r}", folder=True)
            frames += [read_frame(image) for image in sorted(folder.rglob("*"))
                       if image.suffix.lower() in YOLO_IMAGE_SUFFIXES]
    return frames, notes


def _write(frames: list[_Frame], names: list[str], keypoints: list[list[str]], out: Path,
           shift: float, info: dict[str, Any]) -> dict[str, int]:
    """Copies the images (or writes them as PNG) and the COCO JSON, `shift` added to labelled
    coordinates; removes what it wrote if anything fails (`out` was new or empty)."""
    existed, src = out.exists(), info["source"]
    if existed and any(out.iterdir()):  # filled while we were reading
        raise InputError("exists and is not an empty folder; refusing to overwrite it", str(out))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: dict[str, tuple[int, Path | None]] = {}  # name -> (image id, the file it comes from)
    occluded = 0
    try:
        for frame in frames:
            file = frame.file.resolve() if frame.file else None
            if seen.get(frame.name, (0, file))[1] != file:
                raise InputError(f"two images would be written as {frame.name!r}", src)
            if frame.name not in seen:
                seen[frame.name] = (len(images) + 1, file)
                width, height = _put_image(frame, out / "images" / frame.name, src)
                images.append({"id": len(images) + 1, "file_name": f"images/{frame.name}",
                               "width": width, "height": height})
            for cat, points in frame.instances:
                ok = (points[:, 2] > 0) & np.isfinite(points[:, :2]).all(axis=1)
                values = np.where(ok[:, None], points + [shift, shift, 0], 0.0).ravel().tolist()
                xy = points[ok, :2] + shift
                lo, hi = (xy.min(0), xy.max(0)) if ok.any() else (np.zeros(2), np.zeros(2))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": seen[frame.name][0],
                    "category_id": cat + 1, "keypoints": values, "num_keypoints": int(ok.sum()),
                    "bbox": [*map(float, lo), *map(float, hi - lo)],
                    "area": float(np.prod(hi - lo)), "iscrowd": 0})
                occluded += int((points[ok, 2] == 1).sum())
        categories = [{"id": i + 1, "name": name, "supercategory": name, "keypoints": kps}
                      for i, (name, kps) in enumerate(zip(names, keypoints, strict=True))]
        data = {"info": {"description": "imported by kp data import", **info}, "images": images,
                "annotations": annotations, "categories": categories}
        out.mkdir(parents=True, exist_ok=True)
        (out / "annotations.json").write_text(json.dumps(data) + "\n", encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(out, ignore_errors=True)
        if existed:
            out.mkdir()
        if isinstance(exc, OSError):  # a full disk, a read-only folder
            raise InputError(f"cannot write: {exc.strerror or exc}", str(out)) from None
        raise
    labelled = sum(a["num_keypoints"] for a in annotations)
    return {"images": len(images), "instances": len(annotations), "keypoints": labelled,
            "occluded": occluded}


def _put_image(frame: _Frame, dest: Path, src: str) -> tuple[int, int]:
    """Copies `frame.file` (or writes `frame.read()`'s pixels as PNG) to `dest`; its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    item = f"image {frame.name!r}"
    if frame.file is not None:
        size = _image_size(frame.file, Path(src), item)
        try:
            shutil.copyfile(frame.file, dest)
        except OSError as exc:
            raise InputError(f"{item}: cannot copy it: {exc.strerror or exc}", src) from None
        return size
    try:
        pixels = np.asarray(frame.read())
    except Exception as exc:  # a broken embedded frame or video: the input's fault
        raise InputError(f"{item}: cannot read the frame: {first_line(exc)}", src) from None
    pixels = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    Image.fromarray(pixels).save(dest, format="PNG")
    return pixels.shape[1], pixels.shape[0]
