"""Sampled parameters: the distributions of a search-space file and Optuna's define-by-run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kp_platform.config import unknown
from kp_platform.errors import InputError

KINDS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Parameter:
    """One sampled config key.

    Attributes:
        key: Dotted config key, e.g. `optim.lr`.
        kind: `loguniform`, `uniform`, `int` or `choice`.
        values: `[low, high]`, or the choices.
        when: Sampled only when every named (earlier) parameter holds one of the listed values.
    """

    key: str
    kind: str
    values: tuple[Any, ...]
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def contains(self, value: Any) -> bool:
        """Whether `value` is one this distribution can produce."""
        if self.kind == "choice":
            return any(value == v and type(value) is type(v) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.values[0] <= value <= self.values[1]

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(sampled.get(key, _MISSING) in allowed for key, allowed in self.when)


_MISSING = object()


class SpaceSampler:
    """Optuna's define-by-run function: suggests each active parameter in file order.

    A plain class (not a closure) so that Tune can pickle the searcher into its experiment state.
    """

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self.parameters = list(parameters)

    def __call__(self, trial: Any) -> None:
        sampled: dict[str, Any] = {}
        for p in self.parameters:
            if not p.active(sampled):
                continue
            if p.kind == "choice":
                sampled[p.key] = trial.suggest_categorical(p.key, list(p.values))
            elif p.kind == "int":
                sampled[p.key] = trial.suggest_int(p.key, p.values[0], p.values[1])
            else:
                sampled[p.key] = trial.suggest_float(p.key, p.values[0], p.values[1],
                                                     log=p.kind == "loguniform")


def parse_parameter(key: str, entry: Any, earlier: list[Parameter], where: str, source: str
                    ) -> Parameter:
    """One `space:` entry, e.g. `{int: [2, 4], when: {model.backbone: unet}}`, checked.

    Args:
        key: The dotted config key.
        entry: The entry's YAML data.
        earlier: The parameters listed before it (the only ones a condition may name).
        where: `space.<key>`, for messages.
        source: The file, for messages.
    """
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected one of {', '.join(KINDS)} (e.g. "
                         "{loguniform: [1e-4, 1e-2]})", source)
    kinds = [k for k in entry if k != "when"]
    if len(kinds) != 1 or kinds[0] not in KINDS:
        odd = [k for k in kinds if k not in KINDS]
        hint = unknown(odd[0], KINDS, "distribution") if odd else "give exactly one"
        raise InputError(f"{where}: {hint}; distributions are {', '.join(KINDS)}", source)
    kind, values = kinds[0], entry[kinds[0]]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise InputError(f"{where}.choice: expected a non-empty list", source)
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            raise InputError(f"{where}.choice: choices must be scalars (Optuna's rule)", source)
        if len({repr(v) for v in values}) != len(values):
            raise InputError(f"{where}.choice: duplicate choices", source)
        values = tuple(values)
    else:
        values = _bounds(kind, values, f"{where}.{kind}", source)
    when = _conditions(entry.get("when"), earlier, f"{where}.when", source)
    return Parameter(key, kind, values, when)


def _bounds(kind: str, values: Any, where: str, source: str) -> tuple[Any, Any]:
    if not isinstance(values, list) or len(values) != 2:
        raise InputError(f"{where}: expected [low, high]", source)
    try:
        low, high = (_number(v) for v in values)
    except ValueError:
        raise InputError(f"{where}: bounds must be numbers, got {values!r}", source) from None
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise InputError(f"{where}: bounds must be integers, got {values!r}", source)
    if not low < high:
        raise InputError(f"{where}: low must be below high, got {values!r}", source)
    if kind == "loguniform" and low <= 0:
        raise InputError(f"{where}: bounds must be > 0 for a log scale, got {values!r}", source)
    return (int(low), int(high)) if kind == "int" else (float(low), float(high))


def _conditions(when: Any, earlier: list[Parameter], where: str, source: str
                ) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise InputError(f"{where}: expected {{other.key: value}}", source)
    by_key = {p.key: p for p in earlier}
    conditions = []
    for key, allowed in when.items():
        if key not in by_key:
            raise InputError(f"{where}: {key!r} is not a parameter listed before this one",
                             source)
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        for value in allowed:
            if not by_key[key].contains(value):
                raise InputError(f"{where}: {key} never takes the value {value!r}", source)
        conditions.append((key, allowed))
    return tuple(conditions)


def _number(value: Any) -> float:
    # YAML 1.1 reads `1e-4` (no dot) as a string; users write it that way.
    if isinstance(value, bool):
        raise ValueError(value)
    try:
        number = float(value)
    except (TypeError, OverflowError):  # None, a list, an int beyond float range
        raise ValueError(value) from None
    if not math.isfinite(number):
        raise ValueError(value)
    return number
