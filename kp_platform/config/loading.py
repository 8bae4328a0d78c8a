"""Defaults → YAML file → dotted `key=value` overrides, with every value checked against its type.

`kp train` and every sweep trial call `load_config` / `apply_overrides`, so a sampled
hyperparameter reaches training exactly as a command-line override would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import yaml

from kp_platform.config.overrides import (
    dataclass_key_type,
    leaf_keys,
    parse_overrides,
    set_dotted,
)
from kp_platform.config.reading import read_dataclass
from kp_platform.config.schema import Config
from kp_platform.errors import InputError
from kp_platform.files import read_text

Overrides = Union[Sequence[str], Mapping[str, Any]]  # noqa: UP007 (a runtime alias on 3.10)


def load_config(path: str | Path | None = None, overrides: Overrides = ()) -> Config:
    """Builds the config from defaults, an optional YAML file and overrides.

    Args:
        path: YAML file whose sections replace the defaults key by key.
        overrides: `["optim.lr=0.01", ...]` strings or a `{"optim.lr": 0.01}` mapping.

    Raises:
        InputError: unreadable YAML, an unknown key (naming the closest valid one), a value of the
            wrong type or out of range.
    """
    config = Config()
    if path is not None:
        config = read_dataclass(config, read_yaml(path), str(path), candidates=all_keys())
    return apply_overrides(config, overrides)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML mapping with `safe_load`; an empty file is an empty mapping."""
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"invalid YAML{where}", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("expected a mapping of config sections at the top level", str(path))
    return data


def apply_overrides(config: Config, overrides: Overrides) -> Config:
    """Returns a copy of `config` with dotted-key overrides applied and validated.

    Args:
        config: The config to start from (not modified).
        overrides: `"section.key=value"` strings, whose values are parsed as YAML scalars, lists or
            mappings, or a mapping from dotted keys to already-typed values (what a sweep samples).
    """
    items = (overrides if isinstance(overrides, Mapping)
             else parse_overrides(overrides, config_key_type, "overrides"))
    data = config_to_dict(config)
    for key, value in items.items():
        config_key_type(key)
        set_dotted(data, key, value, "overrides")
    return read_dataclass(Config(), data, "overrides", candidates=all_keys())


def config_key_type(key: str) -> Any:
    """The declared type of dotted config key `key` (e.g. `float` for `optim.lr`).

    Raises:
        InputError: an unknown key, naming the closest valid one, or a section.
    """
    try:
        return dataclass_key_type(Config, key, what="config key")
    except InputError as exc:
        raise InputError(str(exc), "overrides") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dicts and lists: what goes into YAML, checkpoints and wandb."""
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """The inverse of `config_to_dict`; unknown keys and bad values raise InputError."""
    return read_dataclass(Config(), data, source, candidates=all_keys())


def save_config(config: Config, path: str | Path) -> Path:
    """Writes the resolved config as YAML (sections in schema order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema, e.g. `optim.lr`."""
    return leaf_keys(cls, prefix)
