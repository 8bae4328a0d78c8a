"""Synthetic COCO keypoint datasets of towels and T-shirts, in two deliberately different domains.

Both domains render the same cloth: procedurally textured (stripes, checks, mottled; in the
synthetic domain also flat colours), folded, shadowed, and seen through the same camera model
(uneven lighting, colour cast, gamma, blur, sensor noise). They differ in what a renderer cannot
cheaply provide: ``synthetic`` images are lossless PNGs on procedural backgrounds (gradients,
fractal noise, patterns, distractor shapes; domain randomisation), ``real`` images put the cloth on
photos (scikit-image's bundled sample photos) and are JPEG-compressed, so that
synthetic-to-real transfer has a measurable gap to close.

Every image is rendered from its own RNG, seeded by ``(seed, image index)``, so the output is
byte-identical for identical arguments whatever the number of worker processes.

Keypoints use the pixel-centre convention: pixel (row i, col j) has its centre at (x=j, y=i).
OpenCV's drawing functions use the same convention, so the drawn cloth and its keypoints agree to
sub-pixel precision. Keypoints cut off by the border are written as ``0, 0, 0`` (COCO's "not
labelled": other COCO tools take any v>0 as a labelled point) and counted in the dataset's
``info.keypoints`` summary; keypoints covered by a later-drawn instance get v=1.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from kp_platform.errors import InputError

DOMAINS = ("synthetic", "real")

CATEGORIES: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "towel",
        "supercategory": "cloth",
        # Corners run clockwise from the towel's top-left (before rotation); grasp is its centre.
        "keypoints": ["corner0", "corner1", "corner2", "corner3", "grasp"],
        "skeleton": [[1, 2], [2, 3], [3, 4], [4, 1]],
    },
    {
        "id": 2,
        "name": "shirt",
        "supercategory": "cloth",
        # "_left" is the shirt's own left, drawn on the image's left (the shirt faces away).
        "keypoints": ["neck", "sleeve_left", "sleeve_right", "hem_left", "hem_right"],
        "skeleton": [[1, 2], [1, 3], [2, 4], [3, 5], [4, 5]],
    },
]

# Photos that ship inside the scikit-image wheel (never the ones its fetchers download).
_PHOTO_FILES = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
    "grass.png", "gravel.png", "motorcycle_left.png", "rocket.jpg",
)  # fmt: skip
_MAX_ROTATION = np.deg2rad(35.0)  # moderate, so that a shirt's left stays on the image's left
_INSTANCE_COUNT_P = (0.2, 0.35, 0.28, 0.17)  # P(0..3 instances); 0 gives negative images
_FLAT_CLOTH_P = 0.25  # synthetic domain: P(flat-coloured cloth), else procedurally textured
_BACKGROUND_P = (0.3, 0.4, 0.3)  # synthetic domain: P(gradient, fractal noise, pattern)
_MAX_DISTRACTORS = 4  # synthetic domain: 0..4 clutter shapes on the background
_DECIMALS = 3  # rounding of floats in the JSON, for stable bytes
_photos: list[np.ndarray] | None = None  # loaded once per process, on first use


def generate_dataset(
    out_dir: str | Path,
    domain: str,
    num_images: int,
    image_size: int,
    seed: int,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Renders a COCO keypoint dataset of towels and shirts.

    Args:
        out_dir: Folder to write ``annotations.json`` and ``images/`` into (created if needed).
        domain: ``"synthetic"`` (clean PNGs) or ``"real"`` (photo backgrounds, JPEGs).
        num_images: How many images, at least 1.
        image_size: Side of the square images in pixels, at least 32.
        seed: Non-negative base seed; image ``i`` uses ``np.random.default_rng([seed, i])``.
        workers: Worker processes; defaults to the CPUs available (``os.cpu_count()`` where
            the OS cannot tell). Does not change the output.
        progress: Show a tqdm progress bar.

    Returns:
        The path of the written ``annotations.json``.

    Raises:
        InputError: (a ``ValueError``) for bad arguments.
    """
    if domain not in DOMAINS:
        raise InputError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    for name, value, minimum in (
        ("num_images", num_images, 1),
        ("image_size", image_size, 32),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if workers is None:  # the CPUs this process may use (a cluster job may get fewer)
        affinity = getattr(os, "sched_getaffinity", None)
        workers = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(num_images - 1)))
    tasks = [(i, int(seed), domain, int(image_size), str(out), digits) for i in range(num_images)]

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    counts = {"visible": 0, "occluded": 0, "outside_image": 0}
    with tqdm(total=num_images, disable=not progress, desc=f"synth {domain}", unit="img") as bar:
        for index, file_name, instances in _run(tasks, min(workers, num_images)):
            image_id = index + 1
            size = {"width": image_size, "height": image_size}
            images.append({"id": image_id, "file_name": file_name, **size})
            for inst in instances:
                counts["outside_image"] += inst.pop("_outside")
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **inst})
                flags = inst["keypoints"][2::3]
                counts["visible"] += flags.count(2.0)
                counts["occluded"] += flags.count(1.0)
            bar.update(1)

    dataset = {
        "info": {
            "description": f"Cloth keypoints, {domain} domain, {num_images} images of "
            f"{image_size}x{image_size}",
            "domain": domain,
            "seed": int(seed),
            "generator": "kp_platform.data.synth",
            # Rendered keypoints: labelled (v=2, v=1) and cut off by the border (written 0, 0, 0).
            "keypoints": counts,
        },
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(dataset) + "\n", encoding="utf-8")
    return path


def _run(tasks: list[tuple], workers: int) -> Iterator[tuple[int, str, list[dict[str, Any]]]]:
    """Renders the tasks in order, in a process pool when more than one worker is asked for."""
    if workers <= 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # tiny images: OpenCV's thread pool costs more than it saves
        try:
            yield from map(_render_task, tasks)
        finally:
            cv2.setNumThreads(threads)  # leave the caller's process as it was
        return
    # Small chunks keep the bar moving and balance the load.
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    # Workers fork from a fork server, not from the caller: the caller may run threads (Ray,
    # wandb, OpenMP), and a child forked from a threaded process can wait forever on a lock
    # another thread held (seen in the test suite). The server imports this module once.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ctx.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        yield from pool.imap(_render_task, tasks, chunksize=chunksize)


def _load_photos() -> list[np.ndarray]:
    """Loads the bundled scikit-image photos as RGB uint8 arrays (cached per process)."""
    global _photos
    if _photos is None:
        import skimage  # imported here: only the real domain needs it

        data_dir = Path(skimage.__file__).parent / "data"
        paths = [data_dir / name for name in _PHOTO_FILES if (data_dir / name).is_file()]
        if not paths:
            raise RuntimeError(f"no sample photos found in {data_dir}; reinstall scikit-image")
        _photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return _photos


def _render_task(task: tuple) -> tuple[int, str, list[dict[str, Any]]]:
    """Renders and writes one image; returns its index, file name and annotations (no ids)."""
    index, seed, domain, size, out_dir, digits = task
    rng = np.random.default_rng([seed, index])
    real = domain == "real"
    img = _photo_background(rng, size) if real else _procedural_background(rng, size)

    n_instances = int(rng.choice(len(_INSTANCE_COUNT_P), p=_INSTANCE_COUNT_P))
    placed: list[tuple[int, np.ndarray, np.ndarray, float]] = []
    for _ in range(n_instances):
        category_id = int(rng.integers(1, 3))
        poly, kps = _towel(rng) if category_id == 1 else _shirt(rng)
        poly, kps = _place(rng, size, poly, kps)
        alpha = _coverage(poly, size)[..., None]
        img = _shadow(rng, img, alpha)
        flat = not real and rng.random() < _FLAT_CLOTH_P
        cloth = _random_colour(rng) if flat else _cloth_texture(rng, size)
        img = img * (1.0 - alpha) + cloth * alpha
        placed.append((category_id, poly, kps, float(alpha.sum())))

    img = _camera_effects(rng, img)
    if real:
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 86))]
    else:
        ext, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]
    file_name = f"images/{index:0{digits}d}{ext}"
    bgr = cv2.cvtColor(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(Path(out_dir) / file_name), bgr, params):
        raise OSError(f"could not write {Path(out_dir) / file_name}")
    return index, file_name, _annotations(placed, size)


def _annotations(
    placed: list[tuple[int, np.ndarray, np.ndarray, float]], size: int
) -> list[dict[str, Any]]:
    """COCO annotations of the placed instances; keypoints under a later instance get v=1.

    A keypoint outside the image (x < 0, y < 0, x >= size, y >= size, as written) becomes
    ``0, 0, 0``; each annotation carries how many in ``_outside`` (popped by the caller).
    """
    out = []
    for k, (category_id, poly, kps, area) in enumerate(placed):
        later = [p.astype(np.float32).reshape(-1, 1, 2) for _, p, _, _ in placed[k + 1 :]]
        values: list[float] = []
        outside = 0
        for x, y in kps:
            xr, yr = round(float(x), _DECIMALS), round(float(y), _DECIMALS)
            if not (0 <= xr < size and 0 <= yr < size):
                values += [0.0, 0.0, 0.0]
                outside += 1
                continue
            hidden = any(cv2.pointPolygonTest(c, (float(x), float(y)), False) >= 0 for c in later)
            values += [xr, yr, 1.0 if hidden else 2.0]
        # The box is the instance's extent clipped to the image, like an annotator would draw it.
        lo = np.clip(poly.min(axis=0), 0, size)
        hi = np.clip(poly.max(axis=0), 0, size)
        bbox = [round(float(v), _DECIMALS) for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])]
        out.append(
            {
                "category_id": category_id,
                "keypoints": values,
                "num_keypoints": len(kps) - outside,
                "bbox": bbox,
                "area": round(area, _DECIMALS),
                "iscrowd": 0,
                "_outside": outside,
            }
        )
    return out


# ---- shapes, in a local frame about the origin, about one unit across, y pointing down ----


def _densify(poly: np.ndarray, step: float = 0.03) -> np.ndarray:
    """Subdivides a closed polygon's edges, so that the cloth warp can make them wavy."""
    out = []
    for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out.append(a + (b - a) * (np.arange(n)[:, None] / n))
    return np.concatenate(out)


def _towel(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle of random aspect: its outline and [corner0..3, grasp=centre] keypoints."""
    w, h = 1.0, rng.uniform(0.55, 1.0)
    if rng.random() < 0.5:
        w, h = h, w
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return _densify(corners), np.vstack([corners, [[0.0, 0.0]]])


def _shirt(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A T-shirt outline with sleeves; keypoints [neck, sleeve_l, sleeve_r, hem_l, hem_r]."""
    half_width, hem_y = rng.uniform(0.26, 0.36), rng.uniform(0.42, 0.58)
    neck_w, neck_d = rng.uniform(0.09, 0.15), rng.uniform(0.05, 0.13)
    flare = rng.uniform(0.95, 1.12)
    sides: list[np.ndarray] = []
    sleeve_mid: list[np.ndarray] = []
    for sign in (1.0, -1.0):  # the image's right side first; both sides vary independently
        angle = rng.uniform(np.deg2rad(15), np.deg2rad(55))  # sleeve droop below horizontal
        length, width = rng.uniform(0.16, 0.32), rng.uniform(0.13, 0.21)
        d = np.array([np.cos(angle), np.sin(angle)])
        n = np.array([-np.sin(angle), np.cos(angle)])  # across the sleeve, towards the hem
        shoulder = np.array([half_width + 0.03, -0.46])
        top, bottom = shoulder + length * d, shoulder + length * d + width * n
        armpit = np.array([half_width, shoulder[1] + width * np.cos(angle) + 0.02])
        side = np.array([[neck_w, -0.5], shoulder, top, bottom, armpit,
                         [half_width * flare, hem_y]])  # fmt: skip
        side[:, 0] *= sign
        sides.append(side)
        sleeve_mid.append((side[2] + side[3]) / 2)
    neck = np.array([0.0, -0.5 + neck_d])
    outline = np.vstack([neck, sides[0], sides[1][::-1]])
    kps = np.array([neck, sleeve_mid[1], sleeve_mid[0], sides[1][5], sides[0][5]])
    return _densify(outline), kps


def _place(
    rng: np.random.Generator, size: int, poly: np.ndarray, kps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warps a local shape like cloth, adds perspective and places it (maybe across the border).

    Outline and keypoints go through the same map, so the keypoints stay on the cloth.
    """
    pts = np.vstack([poly, kps])
    # Smooth sine displacement: two terms with amplitude * frequency * 2 * pi < 0.4 each keep
    # the map one-to-one (Jacobian stays invertible), so edges get wavy but never fold over.
    for _ in range(2):
        amp = rng.uniform(-0.03, 0.03, size=2)
        freq = rng.uniform(-2.0, 2.0, size=2)
        pts = pts + amp * np.sin(2 * np.pi * pts @ freq + rng.uniform(0, 2 * np.pi))[:, None]
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float32)
    jitter = rng.uniform(-0.1, 0.1, size=(4, 2)).astype(np.float32)
    homography = cv2.getPerspectiveTransform(square, square + jitter)
    pts = cv2.perspectiveTransform(pts[None].astype(np.float64), homography)[0]
    theta = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    scale = rng.uniform(0.3, 0.8) * size
    centre = rng.uniform(0.08, 0.92, size=2) * (size - 1)  # near a border: partly cut off
    pts = pts @ rot.T * scale + centre
    return pts[: len(poly)], pts[len(poly) :]


# ---- rendering ----


def _coverage(poly: np.ndarray, size: int) -> np.ndarray:
    """The fraction of each pixel that the polygon covers, as a float32 (size, size) array.

    Filled 4x supersampled and box-filtered rather than with cv2.LINE_AA, which grows the shape
    by about half a pixel; this keeps the silhouette within ~0.1 px of the true outline.
    """
    ss = max(1, min(4, 1024 // size))
    hi = np.zeros((size * ss, size * ss), np.uint8)
    # Pixel centres map to pixel centres; 4 fractional bits keep the vertices sub-pixel.
    pts = np.round(((poly + 0.5) * ss - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(hi, [pts], 255, cv2.LINE_8, shift=4)
    mask = cv2.resize(hi, (size, size), interpolation=cv2.INTER_AREA) if ss > 1 else hi
    return mask.astype(np.float32) / 255.0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated RGB colour in [0, 1], through HSV so that it is rarely grey."""
    hsv = np.array([[[rng.uniform(0, 360), rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0)]]])
    return cv2.cvtColor(hsv.astype(np.float32), cv2.COLOR_HSV2RGB)[0, 0]


def _procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient, fractal-noise or patterned background, maybe cluttered with shapes.

    Domain randomisation: the synthetic domain never sees a photo, but its backgrounds are
    varied enough that a detector cannot separate cloth from background by flatness alone.
    """
    kind = rng.choice(3, p=_BACKGROUND_P)
    a, b = rng.uniform(0.1, 0.9, size=(2, 3)).astype(np.float32)
    if kind == 0:  # a linear gradient (never a flat colour: that would be too easy)
        t = _ramp(rng, size)
    elif kind == 1:  # fractal noise: blotchy, like an out-of-focus scene
        t = _fractal_noise(rng, size)
    else:  # a fabric-like pattern that is not cloth: the shape, not the texture, decides
        t = _unit_range(_cloth_texture(rng, size).mean(axis=2))
    img = a * (1 - t[..., None]) + b * t[..., None]
    img = np.ascontiguousarray(img, dtype=np.float32)
    for _ in range(int(rng.integers(0, _MAX_DISTRACTORS + 1))):
        _draw_distractor(rng, img)
    return img


def _fractal_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Value noise summed over octaves (coarse to fine, halving amplitude), scaled to [0, 1]."""
    total = np.zeros((size, size), np.float32)
    for octave in range(4):
        cells = 2 ** (octave + 2)
        grid = rng.random((cells, cells)).astype(np.float32)
        total += cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) / 2**octave
    return _unit_range(total)


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Values scaled linearly to [0, 1] (a constant array becomes zeros)."""
    return (values - values.min()) / max(float(values.max() - values.min()), 1e-6)


def _draw_distractor(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draws an ellipse, a box or a thick line in a random colour, in place (clutter)."""
    size = img.shape[0]
    colour = tuple(float(c) for c in _random_colour(rng))
    centre = _int_pt(rng.uniform(0, size, 2))
    kind = int(rng.integers(3))
    if kind == 0:
        axes = _int_pt(rng.uniform(0.03, 0.2, 2) * size)
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    elif kind == 1:
        half = rng.uniform(0.02, 0.1, 2) * size
        box = ((centre[0], centre[1]), (2 * half[0], 2 * half[1]), float(rng.uniform(0, 90)))
        cv2.fillPoly(img, [cv2.boxPoints(box).astype(np.int32)], colour)
    else:
        end = _int_pt(rng.uniform(0, size, 2))
        cv2.line(img, centre, end, colour, max(1, int(rng.uniform(0.01, 0.04) * size)))


@lru_cache(maxsize=4)
def _grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates (y, x), float32, shape (2, size, size); cached, read-only."""
    grid = np.mgrid[0:size, 0:size].astype(np.float32)
    grid.flags.writeable = False
    return grid


def _ramp(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image, in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = _grid(size) / (size - 1) - 0.5
    t = xx * np.cos(angle) + yy * np.sin(angle)
    return (t - t.min()) / (t.max() - t.min())


def _photo_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a random sample photo, rescaled and maybe mirrored."""
    photos = _load_photos()
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y : y + side, x : x + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32) / 255.0


def _cloth_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stripes, checks or mottled noise in two colours, shaded by soft folds and creases."""
    a, b = _random_colour(rng), _random_colour(rng)
    kind = int(rng.integers(3))
    yy, xx = _grid(size)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = rng.uniform(3.0, 10.0) * size / 128
    if kind == 0:  # stripes
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif kind == 1:  # checks
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:  # mottled: coarse noise, upsampled, plus fine grain
        coarse = rng.random((8, 8)).astype(np.float32)
        t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        t = t + 0.15 * rng.standard_normal((size, size), dtype=np.float32)
    tex = a * (1 - t[..., None]) + b * t[..., None]
    # Folds: a soft periodic shading across the cloth, plus a few blurred dark creases.
    fold = 1.0 + rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * v / (rng.uniform(0.2, 0.6) * size))
    creases = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(0, 4))):
        p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        cv2.line(creases, _int_pt(p), _int_pt(q), 1.0, max(1, size // 64))
    creases = cv2.GaussianBlur(creases, (0, 0), size / 100)
    return tex * (fold * (1 - 0.5 * creases))[..., None]


def _int_pt(p: np.ndarray) -> tuple[int, int]:
    """A point as the plain-int tuple that cv2's drawing functions want."""
    return int(p[0]), int(p[1])


def _shadow(rng: np.random.Generator, img: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Darkens the scene under a blurred, offset copy of the instance's mask (a drop shadow)."""
    size = img.shape[0]
    dx, dy = rng.uniform(-0.04, 0.04, 2) * size
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    shade = cv2.warpAffine(alpha[..., 0], shift, (size, size))
    shade = cv2.GaussianBlur(shade, (0, 0), max(1.0, size / 60))
    return img * (1 - rng.uniform(0.2, 0.5) * shade)[..., None]


def _camera_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Uneven lighting, colour cast, gamma, blur and sensor noise: the 'real' camera."""
    size = img.shape[0]
    light = 1.0 + rng.uniform(-0.5, 0.5) * (_ramp(rng, size) - 0.5)
    img = img * light[..., None] * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    img = cv2.pow(np.clip(img, 0, 1), rng.uniform(0.6, 1.6))  # gamma; cv2 is ~4x faster
    if rng.random() < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3) * size / 128)
    img = img + rng.uniform(0.01, 0.05) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 1)
