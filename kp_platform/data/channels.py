"""Channel configuration: which COCO keypoint types feed which heatmap channel.

A channel gathers every listed keypoint type of every instance in an image, so its keypoint count
varies per image; one keypoint type may feed several channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kp_platform.errors import InputError


@dataclass(frozen=True)
class ChannelSpec:
    """One channel as the user wrote it: keypoint types as `category.keypoint` or bare names."""

    name: str
    keypoints: tuple[str, ...]


@dataclass(frozen=True)
class ChannelMap:
    """Channels resolved against a dataset's categories.

    Attributes:
        names: Channel names, in channel order.
        sources: Per channel, the (category_id, keypoint_index) pairs it gathers, in the order
            they were listed.
    """

    names: tuple[str, ...]
    sources: tuple[tuple[tuple[int, int], ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str, source: str = "channels") -> int:
        """The position of channel `name`; an InputError naming the known channels otherwise."""
        if name not in self.names:
            raise InputError(f"unknown channel {name!r}; channels are {list(self.names)}", source)
        return self.names.index(name)

    def flip_permutation(self, pairs: Sequence[Sequence[str]], source: str) -> list[int]:
        """Channel permutation applied after a horizontal flip: each pair swaps places."""
        permutation = list(range(len(self.names)))
        for left, right in pairs:
            i, j = self.index(left, source), self.index(right, source)
            permutation[i], permutation[j] = j, i
        return permutation


def parse_channels(spec: Any, source: str = "channels") -> list[ChannelSpec] | None:
    """Reads a channel configuration in any of its accepted forms.

    Args:
        spec: None (one channel per keypoint type), a list of `{name, keypoints}` mappings, a
            mapping with a `channels` list, the compact string `a=b=c:d` (`:` between channels,
            `=` inside one), or the path of a YAML file holding one of these.
        source: Where `spec` came from, for error messages.
    """
    if spec is None:
        return None
    if isinstance(spec, (str, Path)) and _looks_like_path(str(spec)):
        from kp_platform.config import read_yaml

        return parse_channels(read_yaml(spec), source=str(spec))
    if isinstance(spec, str):
        return _parse_compact(spec, source)
    if isinstance(spec, Mapping):
        if "channels" not in spec:
            raise InputError("expected a 'channels' list", source)
        spec = spec["channels"]
    if not isinstance(spec, list) or not spec:
        raise InputError("channels must be a non-empty list of {name, keypoints}", source)
    channels = []
    for i, item in enumerate(spec):
        if not isinstance(item, Mapping) or set(item) - {"name", "keypoints"}:
            raise InputError(f"channel {i} must have exactly 'name' and 'keypoints'", source)
        keypoints = item.get("keypoints")
        if isinstance(keypoints, str):
            keypoints = [keypoints]
        if (not isinstance(keypoints, (list, tuple)) or not keypoints
                or not all(isinstance(k, str) and k for k in keypoints)):
            raise InputError(f"channel {i}: 'keypoints' must list keypoint names", source)
        name = str(item.get("name") or "=".join(keypoints))
        channels.append(ChannelSpec(name, tuple(keypoints)))
    _check_unique_names(channels, source)
    return channels


def resolve_channels(
    specs: list[ChannelSpec] | None, categories: Mapping[int, Any], source: str
) -> ChannelMap:
    """Maps channel specs onto a dataset's categories.

    Args:
        specs: Parsed channels, or None for one channel per keypoint type.
        categories: category id → object with `name` and `keypoints` (list of names).
        source: The channel configuration's origin, for error messages.

    Raises:
        InputError: a keypoint type that no category has, or a bare name that several have.
    """
    if specs is None:
        return _one_channel_per_keypoint(categories)
    names, sources = [], []
    for spec in specs:
        resolved = tuple(
            _resolve_keypoint(k, spec.name, categories, source) for k in spec.keypoints
        )
        names.append(spec.name)
        sources.append(resolved)
    return ChannelMap(tuple(names), tuple(sources))


def _resolve_keypoint(
    keypoint: str, channel: str, categories: Mapping[int, Any], source: str
) -> tuple[int, int]:
    qualified = [
        (cid, cat.keypoints.index(kp_name))
        for cid, cat in categories.items()
        for kp_name in cat.keypoints
        if f"{cat.name}.{kp_name}" == keypoint
    ]
    if qualified:
        return qualified[0]
    bare = [
        (cid, cat.keypoints.index(keypoint))
        for cid, cat in categories.items()
        if keypoint in cat.keypoints
    ]
    if len(bare) == 1:
        return bare[0]
    if len(bare) > 1:
        owners = ", ".join(f"{categories[cid].name}.{keypoint}" for cid, _ in bare)
        raise InputError(
            f"channel {channel!r}: keypoint {keypoint!r} is ambiguous; write one of {owners}",
            source,
        )
    known = [f"{cat.name}.{k}" for cat in categories.values() for k in cat.keypoints]
    raise InputError(
        f"channel {channel!r}: unknown keypoint {keypoint!r}; the dataset has {known}", source
    )


def _one_channel_per_keypoint(categories: Mapping[int, Any]) -> ChannelMap:
    qualify = len(categories) > 1
    names, sources = [], []
    for cid, cat in categories.items():
        for k, kp_name in enumerate(cat.keypoints):
            names.append(f"{cat.name}.{kp_name}" if qualify else kp_name)
            sources.append(((cid, k),))
    return ChannelMap(tuple(names), tuple(sources))


def _parse_compact(text: str, source: str) -> list[ChannelSpec]:
    channels = []
    for part in text.split(":"):
        keypoints = tuple(k.strip() for k in part.split("="))
        if not part.strip() or not all(keypoints):
            raise InputError(f"compact channel string {text!r} has an empty keypoint name", source)
        channels.append(ChannelSpec("=".join(keypoints), keypoints))
    _check_unique_names(channels, source)
    return channels


def _check_unique_names(channels: list[ChannelSpec], source: str) -> None:
    seen = set()
    for channel in channels:
        if channel.name in seen:
            raise InputError(f"channel name {channel.name!r} is used twice", source)
        seen.add(channel.name)


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or ("/" in text and "=" not in text)
