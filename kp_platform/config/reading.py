"""The one reader from a YAML mapping to a typed dataclass, behind every file the project reads:
configs (`loading.py`), a search-space file's sections (`tune/spec`) and pipeline files
(`pipeline/spec.py`).

Every reader rejects an unknown key (naming the closest known one), coerces each value to its
declared type with `coerce` (so a config key, a sweep setting and a pipeline field accept the
same spellings), reads nested dataclasses the same way, and runs the section's own `checks()`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from kp_platform.config.overrides import coerce, is_union, unknown
from kp_platform.errors import InputError

T = TypeVar("T")


def read_dataclass(base: T, data: Any, source: str, prefix: str = "",
                   candidates: Sequence[str] | None = None, where: str = "") -> T:
    """A copy of dataclass instance `base` with mapping `data` laid over it, field by field.

    Args:
        base: The defaults (e.g. `Config()`), never changed.
        data: The mapping read from YAML; None keeps `base`.
        source: The file, for error messages.
        prefix: The dotted path of this section (`"search."`), for error messages.
        candidates: The keys an unknown key is compared with for "did you mean" (default: this
            section's own keys).
        where: What the mapping belongs to (`"stage 'pretrain'"`), leading error messages.

    Raises:
        InputError: not a mapping, an unknown key, a value of the wrong type or out of range.
    """
    if data is None:
        return base
    cls = type(base)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(data, names, prefix, source, where, candidates)  # also: data is a mapping
    lead = f"{where}: " if where else ""
    values = {}
    for key, value in data.items():
        section = _section_type(hints[key])
        if section is not None and (value is not None or section is hints[key]):
            current = getattr(base, key)  # None for an optional section not yet set
            values[key] = read_dataclass(section() if current is None else current,
                                         value or {}, source, f"{prefix}{key}.", candidates,
                                         where)
        else:
            values[key] = coerce(value, hints[key], f"{lead}{prefix}{key}", source)
    merged = dataclasses.replace(base, **values)  # type: ignore[type-var]
    for key, (ok, message) in getattr(merged, "checks", dict)().items():
        if not ok:
            raise InputError(f"{lead}{prefix}{key} {message} (got {getattr(merged, key)!r})",
                             source)
    return merged


def _section_type(hint: Any) -> Any:
    """The dataclass a field holds (`Section` or `Section | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
    if is_union(hint) and len(arms) == 1 and dataclasses.is_dataclass(arms[0]):
        return arms[0]
    return None


def check_keys(data: Any, allowed: Sequence[str], prefix: str, source: str, where: str = "",
               candidates: Sequence[str] | None = None) -> None:
    """Raises InputError unless `data` is a mapping whose keys are all in `allowed`.

    An unknown key is named with its dotted `prefix` and the closest of `candidates` (default:
    the allowed keys under the same prefix).
    """
    lead = f"{where}: " if where else ""
    if not isinstance(data, Mapping):
        raise InputError(f"{lead}{prefix.rstrip('.') or 'file'} must be a mapping", source)
    for key in data:
        if key not in allowed:
            if candidates is None:
                message = unknown(f"{prefix}{key}", [f"{prefix}{a}" for a in allowed], "key")
            else:
                message = unknown(f"{prefix}{key}", candidates)
            raise InputError(lead + message, source)
