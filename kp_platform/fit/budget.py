"""Time budgets as people write them: `90s`, `20m`, `1h30m`, `1.5h`, or plain seconds."""

from __future__ import annotations

import re

from kp_platform.errors import InputError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, source: str = "--budget") -> float:
    """Seconds in `text`: a number of seconds, or parts like `1h`, `30m`, `45s` in that order.

    Raises:
        InputError: not a duration, or not positive.
    """
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _PART.findall(value)
        units = [unit for _, unit in parts]
        if ("".join(f"{n}{u}" for n, u in parts) != value or not parts
                or units != sorted(units, key="hms".index) or len(set(units)) != len(units)):
            raise InputError(f"{text!r} is not a duration: write e.g. 90s, 20m, 1h30m or a "
                             "number of seconds", source) from None
        seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if not seconds > 0:
        raise InputError(f"the budget must be positive (got {text!r})", source)
    return seconds


def format_duration(seconds: float) -> str:
    """`1h05m`, `12m30s`, `45s`: whole seconds, largest unit first."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
