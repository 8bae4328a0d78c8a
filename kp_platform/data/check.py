"""`kp data check`: what a dataset holds per channel, and which keypoints are dropped and why;
`check_data_config`: the same checks for every file a `data` config section names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from kp_platform.data.channels import ChannelMap
from kp_platform.data.coco import DROP_REASONS, CocoKeypoints


def summarize_dataset(
    coco: CocoKeypoints, channels: ChannelMap, visible_only: bool = False
) -> dict[str, Any]:
    """Counts images, instances and keypoints per channel, as the data loader will see them.

    Returns:
        {"file", "images", "negative_images", "instances", "categories",
         "channels": {name: {"keypoints", "images_with_keypoints", "max_per_image",
                             "dropped": {reason: count}}}}
    """
    per_channel = {
        name: {
            "keypoints": 0, "images_with_keypoints": 0, "max_per_image": 0, "dropped": Counter()
        }
        for name in channels.names
    }
    for image in coco.images:
        gathered = coco.image_keypoints(image.id, channels, visible_only)
        rows = zip(channels.names, gathered.points, gathered.dropped, strict=True)
        for name, points, dropped in rows:
            stats = per_channel[name]
            stats["keypoints"] += len(points)
            stats["images_with_keypoints"] += int(len(points) > 0)
            stats["max_per_image"] = max(stats["max_per_image"], len(points))
            stats["dropped"].update(dropped)
    for stats in per_channel.values():
        stats["dropped"] = {reason: stats["dropped"][reason] for reason in DROP_REASONS}
    return {
        "file": str(coco.path),
        "images": len(coco.images),
        "negative_images": sum(1 for anns in coco.annotations.values() if not anns),
        "instances": sum(len(anns) for anns in coco.annotations.values()),
        "categories": {c.name: list(c.keypoints) for c in coco.categories.values()},
        "channels": per_channel,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of `summarize_dataset`'s result."""
    lines = [
        f"{summary['file']}",
        f"  images: {summary['images']} ({summary['negative_images']} without annotations)",
        f"  instances: {summary['instances']}",
        "  categories: "
        + "; ".join(f"{name} [{', '.join(kps)}]" for name, kps in summary["categories"].items()),
        "",
    ]
    header = ["channel", "keypoints", "images", "max/img", *(f"drop:{r}" for r in DROP_REASONS)]
    rows = [
        [
            name,
            stats["keypoints"],
            stats["images_with_keypoints"],
            stats["max_per_image"],
            *(stats["dropped"][r] for r in DROP_REASONS),
        ]
        for name, stats in summary["channels"].items()
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def check_data_config(data_cfg: Any, load: Callable[..., CocoKeypoints] | None = None) -> None:
    """Everything training would refuse in a `data` config section, without training.

    Loads each COCO file with `load` (default: `CocoKeypoints.load`, the checks `kp data check`
    runs), resolves the channels against each, splits off the validation set and builds the
    augmentation: the datasets `train()` builds, built once and dropped.

    Raises:
        InputError: naming the file (or config key) and the problem.
    """
    from kp_platform.data.dataset import build_datasets

    build_datasets(data_cfg, load=load or CocoKeypoints.load)
