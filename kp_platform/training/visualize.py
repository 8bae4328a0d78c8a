"""Pictures of what the model sees and finds, logged to wandb at each evaluation.

`val/predictions`: per image, three panels side by side: the input, the predicted heatmap (max
over channels) over the input, and the detections (crosses) against the ground truth (circles),
one colour per channel. `val/pr_curves`: per channel, the precision/recall curve behind the AP at
each distance threshold (matplotlib).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# BGR-free: colours are RGB tuples, one per channel, cycling.
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def render_predictions(
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    det_xy: torch.Tensor,
    det_valid: torch.Tensor,
    gt_xy: torch.Tensor,
    gt_mask: torch.Tensor,
    max_images: int = 4,
) -> np.ndarray:
    """A grid image, one row per image.

    Args:
        images: (B, 3, H, W) float in [0, 1].
        heatmaps: (B, C, h, w) probabilities (any stride; resized to H, W).
        det_xy: (B, C, D, 2) detections in input pixels; det_valid: (B, C, D) bool.
        gt_xy: (B, C, K, 2) ground truth in input pixels; gt_mask: (B, C, K) bool.
        max_images: Rows drawn.

    Returns:
        (rows * H, 3 * W, 3) uint8 RGB.
    """
    rows = []
    for b in range(min(max_images, images.shape[0])):
        rgb = (images[b].permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
        height, width = rgb.shape[:2]
        heat = heatmaps[b].amax(0).float().cpu().numpy()
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap((heat.clip(0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        overlay = (0.5 * rgb + 0.5 * colour[..., ::-1]).astype(np.uint8)
        points = rgb.copy()
        for c in range(det_xy.shape[1]):
            tone = PALETTE[c % len(PALETTE)]
            for x, y in gt_xy[b, c][gt_mask[b, c]].tolist():
                cv2.circle(points, (round(x), round(y)), 3, tone, 1, cv2.LINE_AA)
            for x, y in det_xy[b, c][det_valid[b, c]].tolist():
                cv2.drawMarker(points, (round(x), round(y)), tone, cv2.MARKER_CROSS, 5, 1)
        rows.append(np.concatenate([rgb, overlay, points], axis=1))
    return np.concatenate(rows, axis=0)


def pr_curves_figure(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], panel: int = 220
) -> Figure:
    """One square plot per channel: precision (y) against recall (x), a step line per threshold,
    drawn as the AP sums it (precision p[i + 1] over each recall step (r[i], r[i + 1]]).

    Args:
        curves: channel → threshold key → (recall, precision), as `KeypointAP.curves()` gives.
        panel: Side of each channel's plot in pixels.
    """
    columns = max(1, len(curves))
    figure = Figure(figsize=(panel * columns / 100, panel / 100), dpi=100, layout="constrained")
    for column, (name, per_threshold) in enumerate(curves.items()):
        axes = figure.add_subplot(1, columns, column + 1)
        for key, (recall, precision) in per_threshold.items():
            axes.step(recall, precision, where="pre", label=f"{key} px", linewidth=1)
        axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", title=name[:30])
        axes.set_ylabel("precision" if column == 0 else "")
        axes.legend(fontsize=6, loc="lower left")
    return figure


def render_pr_curves(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], panel: int = 220
) -> np.ndarray:
    """`pr_curves_figure` as an image for wandb: (panel, panel * channels, 3) uint8 RGB."""
    canvas = FigureCanvasAgg(pr_curves_figure(curves, panel))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class PredictionImages(pl.Callback):
    """Logs `val/predictions` (see `render_predictions`) to wandb after each evaluation.

    Args:
        logger: The run's WandbLogger.
        max_images: Rows per grid.
    """

    def __init__(self, logger: Any, max_images: int = 4) -> None:
        self.logger = logger
        self.max_images = max_images
        self._batch: dict[str, Any] | None = None
        self._curves: dict[str, Any] | None = None
        self._seen_evaluations = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            self._batch = {k: batch[k][: self.max_images] for k in
                           ("image", "target_xy", "target_mask")}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # Runs before the module's own hook, which computes the metric and resets its state.
        self._curves = pl_module.metric.curves() if pl_module.evaluating else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if pl_module.evaluations == self._seen_evaluations or self._batch is None:
            return
        self._seen_evaluations = pl_module.evaluations
        with torch.no_grad():
            logits = pl_module(self._batch["image"])
        detections = pl_module.decode(logits)
        grid = render_predictions(
            self._batch["image"], torch.sigmoid(logits), detections.xy, detections.valid,
            self._batch["target_xy"], self._batch["target_mask"], self.max_images,
        )
        caption = ("input | heatmap (max over channels) | detections (+) vs ground truth (o); "
                   "channels: " + ", ".join(pl_module.channel_names))
        self.logger.log_image("val/predictions", [grid], step=trainer.global_step,
                              caption=[caption])
        if self._curves:
            plot = render_pr_curves(self._curves)
            self.logger.log_image("val/pr_curves", [plot], step=trainer.global_step,
                                  caption=["precision (y) vs recall (x) per distance threshold"])
