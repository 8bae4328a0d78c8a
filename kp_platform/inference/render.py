"""`kp predict --render`: images and videos with their detections drawn.

One colour per channel, a filled disc per detection whose radius grows with its score (outlined,
so it shows on any background), and a legend of the channels in the top-left corner. An image
is written as a copy under the render folder; a video as a video with the same frame count and
frame rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kp_platform.inference.sources import Frame, Source, video_properties

# RGB, the tab10 palette: distinct at a glance; repeats after 10 channels.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
# Longer channel names are cut in the legend.
_LEGEND_CHARS = 24
# Output container → fourcc that OpenCV's bundled FFmpeg writes.
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def channel_colour(channel: int) -> tuple[int, int, int]:
    """RGB colour of a channel."""
    return PALETTE[channel % len(PALETTE)]


def draw_detections(
    pixels: np.ndarray, detections: Sequence[np.ndarray], channel_names: Sequence[str]
) -> np.ndarray:
    """Draws detections and a legend on a copy of an image.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        detections: Per channel, an (n, 3) array of (x, y, score) in the image's pixels.
        channel_names: Legend entries, in channel order.

    Returns:
        (H, W, 3) uint8 RGB with the drawing.
    """
    canvas = np.ascontiguousarray(pixels.copy())
    height, width = canvas.shape[:2]
    unit = _unit(height, width)
    _draw_legend(canvas, channel_names, unit)  # first: markers stay visible over it
    shift = 4  # sub-pixel drawing: coordinates in 1/16 pixel
    for channel, points in enumerate(detections):
        colour = channel_colour(channel)
        for x, y, score in points:
            radius = max(1.0, unit * (1.0 + 3.0 * float(np.clip(score, 0.0, 1.0))))
            centre = (int(round(x * (1 << shift))), int(round(y * (1 << shift))))
            r = int(round(radius * (1 << shift)))
            cv2.circle(canvas, centre, r, colour, -1, cv2.LINE_AA, shift)
            cv2.circle(canvas, centre, r, (0, 0, 0), 1, cv2.LINE_AA, shift)
    return canvas


def legend_box(shape: tuple[int, ...], channel_names: Sequence[str]) -> tuple[int, int]:
    """(height, width) of the legend on an image of `shape` (H, W, ...), clipped to it."""
    height, width = shape[:2]
    layout = _legend_layout(channel_names, _unit(height, width))
    return min(layout["box_h"], height), min(layout["box_w"], width)


def _unit(height: int, width: int) -> float:
    """Marker and text sizes follow the image size: 1 up to 100 pixels."""
    return max(1.0, min(height, width) / 100)


def _legend_layout(channel_names: Sequence[str], unit: float) -> dict[str, Any]:
    """Legend names (long ones cut), text scale and thickness, line height, box size."""
    names = [name if len(name) <= _LEGEND_CHARS else name[: _LEGEND_CHARS - 3] + "..."
             for name in channel_names]
    scale, thickness, line = 0.3 * unit, max(1, int(round(unit / 2))), int(round(12 * unit))
    widths = [cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]
              for n in names]
    return {"names": names, "scale": scale, "thickness": thickness, "line": line,
            "box_w": int(line * 1.5 + max(widths, default=0)),
            "box_h": line * len(names) + int(round(4 * unit))}


def _draw_legend(canvas: np.ndarray, channel_names: Sequence[str], unit: float) -> None:
    """Channel swatches and names in a darkened box in the top-left corner."""
    layout = _legend_layout(channel_names, unit)
    region = canvas[: layout["box_h"], : layout["box_w"]]
    region[:] = (region * 0.4).astype(np.uint8)
    margin, swatch, line = int(round(2 * unit)), int(round(8 * unit)), layout["line"]
    for channel, name in enumerate(layout["names"]):
        top = margin + line * channel
        cv2.rectangle(canvas, (margin, top), (margin + swatch, top + swatch),
                      channel_colour(channel), -1)
        cv2.putText(canvas, name, (int(line * 1.2), top + swatch), cv2.FONT_HERSHEY_SIMPLEX,
                    layout["scale"], (255, 255, 255), layout["thickness"], cv2.LINE_AA)


class Renderer:
    """Writes rendered images and videos under one folder as frames arrive, in order.

    Args:
        folder: The render folder.
        sources: From `collect_sources`; each source's `name` is its path under the folder.
        channel_names: Legend entries, in channel order.
    """

    def __init__(self, folder: str | Path, sources: Sequence[Source],
                 channel_names: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.sources = sources
        self.channel_names = list(channel_names)
        self.written: list[Path] = []
        self._writer: cv2.VideoWriter | None = None
        self._writing: int | None = None

    def add(self, frame: Frame, detections: Sequence[np.ndarray]) -> None:
        """Draws one image or video frame (with its pixels) and writes it."""
        assert frame.pixels is not None
        bgr = cv2.cvtColor(draw_detections(frame.pixels, detections, self.channel_names),
                           cv2.COLOR_RGB2BGR)
        src = self.sources[frame.source]
        if not src.is_video:
            self.close()
            out = self.folder / src.name
            out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out), bgr):
                out = out.with_suffix(".png")  # a format OpenCV reads but cannot write
                cv2.imwrite(str(out), bgr)
            self.written.append(out)
            return
        if self._writing != frame.source:
            self.close()
            self._open_video(frame.source, bgr.shape[1], bgr.shape[0])
        assert self._writer is not None
        self._writer.write(bgr)

    def _open_video(self, index: int, width: int, height: int) -> None:
        src = self.sources[index]
        out = self.folder / src.name
        if out.suffix.lower() not in _FOURCC:
            out = out.with_suffix(".mp4")
        out.parent.mkdir(parents=True, exist_ok=True)
        fps = video_properties(src.path)[0] or 25.0
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[out.suffix.lower()])
        self._writer = cv2.VideoWriter(str(out), fourcc, fps, (width, height))
        self._writing = index
        self.written.append(out)

    def close(self) -> None:
        """Finishes the video being written, if any."""
        if self._writer is not None:
            self._writer.release()
        self._writer, self._writing = None, None
