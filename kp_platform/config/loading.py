"""Defaults → YAML file → dotted `key=value` overrides, with every value checked against its type.

`kp train` and every sweep trial call `load_config` / `apply_overrides`, so a sampled
hyperparameter reaches training exactly as a command-line override would.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

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
        config = _merge(config, read_yaml(path), source=str(path))
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
    items = _parse_override_strings(overrides) if not isinstance(overrides, Mapping) else overrides
    data = config_to_dict(config)
    for key, value in items.items():
        parent, leaf, field_type = _locate(data, key)
        if isinstance(value, _RawString):
            value = _parse_raw(value, field_type)
        parent[leaf] = value
    return _merge(Config(), data, source="overrides")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dicts and lists: what goes into YAML, checkpoints and wandb."""
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """The inverse of `config_to_dict`; unknown keys and bad values raise InputError."""
    return _merge(Config(), data, source=source)


def save_config(config: Config, path: str | Path) -> Path:
    """Writes the resolved config as YAML (sections in schema order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema, e.g. `optim.lr`."""
    keys = []
    for f in dataclasses.fields(cls):
        field_type = _hints(cls)[f.name]
        if dataclasses.is_dataclass(field_type):
            keys += all_keys(field_type, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


class _RawString(str):
    """An override value as typed on the command line, parsed once its field's type is known."""


def _parse_override_strings(overrides: Sequence[str]) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} is not of the form section.key=value")
        items[key.strip()] = _RawString(value)
    return items


def _parse_raw(raw: str, field_type: Any) -> Any:
    # A str field keeps the text as typed ("007" stays "007"); other fields parse it as YAML.
    if _accepts_str(field_type) and raw.strip() not in ("null", "~", ""):
        return str(raw)
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return str(raw)


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    if _is_union(tp):
        return any(_accepts_str(arm) for arm in typing.get_args(tp))
    return False


def _locate(data: dict[str, Any], key: str) -> tuple[dict[str, Any], str, Any]:
    """Finds the dict holding `key`'s leaf and the leaf's declared type."""
    parts = key.split(".")
    cls: Any = Config
    node = data
    for depth, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(cls)}
        if part not in names:
            raise InputError(_unknown_key_message(".".join(parts[: depth + 1])), "overrides")
        field_type = _hints(cls)[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(field_type):
                raise InputError(f"{key!r} is a section; set one of its keys", "overrides")
            return node, part, field_type
        if not dataclasses.is_dataclass(field_type):
            raise InputError(_unknown_key_message(key), "overrides")
        cls, node = field_type, node[part]
    raise AssertionError("unreachable")


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}"


def _merge(base: Any, data: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """A copy of dataclass `base` with `data` laid over it, checked field by field."""
    if not isinstance(data, Mapping):
        raise InputError(f"{prefix.rstrip('.') or 'config'} must be a mapping", source)
    cls = type(base)
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in names:
            raise InputError(_unknown_key_message(f"{prefix}{key}"), source)
        field_type = hints[key]
        if dataclasses.is_dataclass(field_type):
            values[key] = _merge(getattr(base, key), value or {}, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, field_type, f"{prefix}{key}", source)
    merged = dataclasses.replace(base, **values)
    _check_ranges(merged, source, prefix)
    return merged


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Checks `value` against the type hint `tp`, converting where no information is lost."""

    def fail() -> InputError:
        return InputError(f"{key}: expected {_type_name(tp)}, got {value!r}", source)

    if tp is Any:
        return value
    if _is_union(tp):
        arms = typing.get_args(tp)
        if value is None and type(None) in arms:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, key, source)
            except InputError:
                continue
        raise fail()
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail()
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail()
        (item_type,) = typing.get_args(tp)
        return [_coerce(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        _, value_type = typing.get_args(tp)
        return {str(k): _coerce(v, value_type, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string; users write it that way.
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        return float(value)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    raise TypeError(f"config field {key} has an unsupported type {tp!r}")


def _check_ranges(section: Any, source: str, prefix: str) -> None:
    """Runs the section's own value checks (those that types cannot express)."""
    checks = section.checks() if hasattr(section, "checks") else {}
    for key, (ok, message) in checks.items():
        if not ok:
            raise InputError(f"{prefix}{key} {message} (got {getattr(section, key)!r})", source)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
