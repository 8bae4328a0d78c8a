"""The pre-flight: everything a sweep's trials will need, checked before Ray starts.

`load_space` checks the file and each sampled value on its own; here every configuration the
space can produce (each choice, each end of each range, combined, conditions respected) is built
with the one `apply_overrides`, and every data file those configurations read is loaded and
checked once, as `kp data check` and `train()` would. A bad sweep ends in seconds with one
`InputError` instead of trials that fail (and are retried) inside Ray.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kp_platform.config import Config, apply_overrides, config_to_dict, get_dotted, unknown
from kp_platform.config.auto import resolve_auto
from kp_platform.errors import InputError
from kp_platform.tune.spec.parameters import Parameter
from kp_platform.tune.spec.space import SweepSpec

MAX_CONFIGURATIONS = 4096
"""Combinations built at most; beyond, the remaining ones are not checked (each sampled value
still is, by `load_space`)."""
# Files a trial opens, besides the COCO files `build_datasets` reads.
_FILE_KEYS = ("model.init_from", "model.pretrained_path")


def preflight(spec: SweepSpec) -> int:
    """Checks every configuration the sweep can produce and every file its trials read.

    Returns:
        How many configurations were built.

    Raises:
        InputError: naming the space file and the configuration, or the data file.
    """
    source = str(spec.path)
    check_study_storage(spec)
    checked: list[tuple[str, dict[str, Any], Config]] = []
    for where, point in itertools.islice(_points(spec), MAX_CONFIGURATIONS):
        try:
            checked.append((where, point, apply_overrides(spec.base, point)))
        except InputError as exc:
            reason = str(exc).removeprefix("overrides: ")
            raise InputError(f"{_where(where, point)}: {reason}", source) from None
    data_sections: dict[str, Config] = {}
    for _, _, config in checked:
        section = {"data": config_to_dict(config.data),
                   **{key: get_dotted(config, key) for key in _FILE_KEYS}}
        data_sections.setdefault(json.dumps(section, sort_keys=True, default=str), config)
    # Cheap checks first: a missing file is found before torch is even imported.
    for config in data_sections.values():
        check_paths(config, source)
    for where, point, config in checked:
        _check_backbone(config, where, point, source)
    loader = CachedLoader()
    for config in data_sections.values():
        check_data(config, loader)
    return len(checked)


def check_study_storage(spec: SweepSpec) -> None:
    """Refuses SQLite on shared storage, and a study password that cannot be read.

    Raises:
        InputError: naming the space file and the `search.*` key.
    """
    from kp_platform.tune.spec.filesystems import shared_storage_reason
    from kp_platform.tune.storage import read_password, study_location

    source = str(spec.path)
    location = study_location(spec)
    if location.is_sqlite and not spec.search.allow_sqlite_on_shared_storage:
        reason = shared_storage_reason(spec.storage_path, spec.experiment_dir)
        if reason:
            raise InputError(
                f"search.storage: the Optuna study would be SQLite, but {reason}, where "
                "SQLite's file locking is unreliable; set search.storage to an RDB URL (e.g. "
                "postgresql://user@host:5432/db, with search.storage_password_env), or "
                "search.allow_sqlite_on_shared_storage: true for a one-machine cluster",
                source)
    read_password(location, source)  # an unset variable or unreadable file fails here


def check_paths(config: Config, source: str) -> None:
    """Checks that each file `config` names exists.

    Raises:
        InputError: `<key>: file not found: <path>`, naming `source`.
    """
    if not config.data.train:
        raise InputError("base config: data.train must name a COCO keypoint JSON file", source)
    for key in ("data.train", "data.val", "data.test", "data.replay", *_FILE_KEYS):
        value = get_dotted(config, key)
        if value and not str(value).startswith("wandb:") and not Path(value).is_file():
            raise InputError(f"{key}: file not found: {value}", source)


def check_data(config: Config, loader: CachedLoader) -> None:
    """Builds the datasets of `config` as `train()` does, loading each file through `loader`.

    Raises:
        InputError: the data file's own error (naming that file), or a bad `data` setting.
    """
    from kp_platform.data.check import check_data_config

    check_data_config(resolve_auto(config)[0].data, load=loader)


class CachedLoader:
    """`CocoKeypoints.load` that reads and checks each file once."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}

    def __call__(self, path: str | Path, pixel_origin: str = "center") -> Any:
        from kp_platform.data.coco import CocoKeypoints

        key = f"{Path(path).resolve()}:{pixel_origin}"
        if key not in self.loaded:
            self.loaded[key] = CocoKeypoints.load(path, pixel_origin=pixel_origin)
        return self.loaded[key]


def space_corners(parameters: Sequence[Parameter]) -> Iterator[dict[str, Any]]:
    """Every combination of each active parameter's choices or range ends, in file order.

    A parameter whose `when` does not hold is left out, exactly as the sampler leaves it out.
    """

    def extend(index: int, point: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if index == len(parameters):
            yield dict(point)
            return
        param = parameters[index]
        if not param.active(point):
            yield from extend(index + 1, point)
            return
        for value in dict.fromkeys(param.values):
            point[param.key] = value
            yield from extend(index + 1, point)
        del point[param.key]

    yield from extend(0, {})


def _points(spec: SweepSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "base config", {}
    for i, point in enumerate(spec.search.points_to_evaluate):
        yield f"search.points_to_evaluate[{i}]", dict(point)
    for point in space_corners(spec.parameters):
        yield "space: the configuration", point


def _check_backbone(config: Config, where: str, point: dict[str, Any], source: str) -> None:
    from kp_platform.models import list_backbones

    name = config.model.backbone
    if name.startswith("timm:") or name in list_backbones():
        return
    hint = unknown(name, list_backbones(), "backbone")
    raise InputError(f"{_where(where, point)}: model.backbone: {hint}", source)


def _where(where: str, point: dict[str, Any]) -> str:
    if not point:
        return where
    return f"{where} {{" + ", ".join(f"{k}={v!r}" for k, v in point.items()) + "}"


def _value(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node
