"""Dotted `key=value` overrides: the one parser behind every command, one coercion, one hint.

`kp train`, `kp sweep`, `kp pipeline` and a search space's `base:` overrides all split their
strings with `parse_overrides`, parse each value for its key's declared type with `parse_value`
and check it with `coerce`, so `trainer.name=007` means the same text everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import yaml

from kp_platform.errors import InputError

TypeOf = Callable[[str], Any]
"""Returns the declared type of a dotted key, or raises InputError for an unknown key."""


def parse_overrides(items: Sequence[str], type_of: TypeOf, source: str | None = None
                    ) -> dict[str, Any]:
    """Splits `key=value` strings and parses each value for its key's declared type.

    Args:
        items: The strings as typed, e.g. `["optim.lr=1e-3", "trainer.name=007"]`.
        type_of: The declared type of a key (raising InputError for an unknown one).
        source: Named in errors (the file the overrides apply to, if any).

    Returns:
        Key → value, in the order given (a later repeat wins).

    Raises:
        InputError: a string without `=`, or an unknown key.
    """
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"override {item!r} is not of the form section.key=value", source)
        values[key] = parse_value(raw, type_of(key))
    return values


def parse_value(raw: str, field_type: Any) -> Any:
    """A command-line value for a field of type `field_type`.

    A field that takes text keeps the text as typed (`007` stays `'007'`); any other field reads
    it as YAML (`1e-4`, `[32, 32]`, `true`, `{a: 1}`); text that is not YAML stays text.
    """
    if accepts_str(field_type) and raw.strip() not in ("null", "~", ""):
        return str(raw)
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return str(raw)


def unknown(key: str, candidates: Sequence[str], what: str = "config key") -> str:
    """`unknown <what> 'key'`, with ` (did you mean 'closest'?)` when one is close enough."""
    close = difflib.get_close_matches(str(key), list(candidates), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {key!r}{hint}"


def dataclass_key_type(cls: type, key: str, prefix: str = "", what: str = "key") -> Any:
    """The declared type of dotted `key` in dataclass `cls` (nested dataclasses by dots).

    Raises:
        InputError: an unknown key (naming the closest one), or a key that names a section.
    """
    parts = key.split(".")
    node: Any = cls
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            candidates = [f"{prefix}{k}" for k in leaf_keys(cls)]
            raise InputError(unknown(f"{prefix}{'.'.join(parts[: depth + 1])}", candidates,
                                     what))
        field_type = typing.get_type_hints(node)[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(field_type):
                raise InputError(f"{prefix + key!r} is a section; set one of its keys")
            return field_type
        if not dataclasses.is_dataclass(field_type):
            raise InputError(unknown(f"{prefix}{key}", [f"{prefix}{k}" for k in leaf_keys(cls)],
                                     what))
        node = field_type
    raise AssertionError("unreachable")


def get_dotted(node: Any, key: str) -> Any:
    """The value at dotted `key` in nested mappings or dataclasses (`optim.lr`)."""
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str | None = None) -> None:
    """Sets dotted `key` in nested mappings `data`, creating missing (or null) sections.

    Raises:
        InputError: a part of the key names a value that is not a section.
    """
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise InputError(f"override {key!r}: {part!r} is not a section", source)
    node[leaf] = value


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of dataclass `cls`, e.g. `optim.lr`."""
    keys = []
    for f in dataclasses.fields(cls):
        field_type = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(field_type):
            keys += leaf_keys(field_type, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def coerce(value: Any, tp: Any, key: str, source: str | None) -> Any:
    """Checks `value` against the type hint `tp`, converting where no information is lost.

    Raises:
        InputError: `key: expected <type>, got <value>`.
    """

    def fail() -> InputError:
        return InputError(f"{key}: expected {type_name(tp)}, got {value!r}", source)

    if tp is Any:
        return value
    if is_union(tp):
        arms = typing.get_args(tp)
        if value is None and type(None) in arms:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return coerce(value, arm, key, source)
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
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        return [coerce(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        args = typing.get_args(tp)
        value_type = args[1] if args else Any
        return {str(k): coerce(v, value_type, f"{key}.{k}", source) for k, v in value.items()}
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
    raise TypeError(f"field {key} has an unsupported type {tp!r}")


def accepts_str(tp: Any) -> bool:
    """Whether a field of type `tp` takes free text."""
    if tp is str:
        return True
    if is_union(tp):
        return any(accepts_str(arm) for arm in typing.get_args(tp))
    return False


def is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if is_union(tp):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
