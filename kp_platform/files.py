"""Reading user files with one-line errors that name the file (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kp_platform.errors import InputError


def read_text(path: str | Path) -> str:
    """The file's text; a missing or unreadable file is an InputError naming it."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise InputError("cannot read: not a text file", str(path)) from None
    except ValueError:  # a NUL character in the path
        raise InputError("cannot read: not a valid path", repr(str(path))) from None


def read_json(path: str | Path) -> Any:
    """The file parsed as JSON; invalid JSON is an InputError naming the line and column."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", str(path)
        ) from None
