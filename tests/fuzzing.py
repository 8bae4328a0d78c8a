"""Helpers for the property-based loader tests: mutate valid inputs, run `kp`, judge the outcome.

Every mutated input must end in success or in exit status 2 with exactly one `error:` line on
stderr: never a traceback (an exception escaping `kp`'s main fails the test with that exception),
never a hang (each run is cut off after `TIME_LIMIT_S`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kp_platform.cli.main import main as kp_main
from kp_platform.errors import InputError

TIME_LIMIT_S = 20


def fuzz_settings(max_examples: int) -> settings:
    """Bounded for CI (a few seconds per test); `KP_FUZZ_SCALE=20` multiplies the examples for a
    deeper run by hand. Derandomized, so a CI failure reproduces."""
    scale = int(os.environ.get("KP_FUZZ_SCALE", "1"))
    return settings(max_examples=max_examples * scale, deadline=None, derandomize=scale == 1,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# Scalars that loaders meet in files written by other tools (or by hand).
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, -1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "..", "../x.png", "/etc/passwd", "a=b:c", "\x00", "é", "1e999", "nan"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn, valid: Any, max_mutations: int = 3) -> Any:
    """`valid` with 1 to `max_mutations` random edits: replace, delete or duplicate a node."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if not path:
            if operation == "replace":
                doc = draw(JSON_VALUES)
            continue
        parent, key = _parent(doc, path), path[-1]
        if operation == "replace":
            parent[key] = draw(JSON_VALUES)
        elif operation == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[draw(st.text(max_size=6))] = copy.deepcopy(parent[key])
    return doc


@st.composite
def mutated_text(draw: st.DrawFn, valid: str) -> str:
    """`valid` text cut, or with a few characters inserted or removed (syntax errors)."""
    text = valid
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["cut", "insert", "remove"]))
        if operation == "cut":
            text = text[:at]
        elif operation == "insert":
            text = text[:at] + draw(st.text(max_size=3)) + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    return text


def dump_json(doc: Any) -> str:
    """JSON as other tools write it: NaN and Infinity included (Python's json reads them)."""
    return json.dumps(doc)


@contextlib.contextmanager
def time_limit(seconds: int = TIME_LIMIT_S) -> Iterator[None]:
    """Fails the example instead of hanging (SIGALRM: main thread, POSIX)."""

    def expire(*_args: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_kp(*argv: Any) -> tuple[int, str, str]:
    """Runs `kp` in-process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with time_limit(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = kp_main([str(a) for a in argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def assert_clean_outcome(code: int, err: str, context: str = "") -> None:
    """Success, or exit 2 with one `error:` line and no traceback."""
    if code == 0:
        return
    assert code == 2, f"exit status {code}: {err!r} {context}"
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, (
        f"not one error line: {err!r} {context}")
    assert "Traceback" not in err


def assert_input_error_or_success(call: Callable[[], Any]) -> str | None:
    """The library form: `call()` returns, or raises InputError with a one-line message."""
    with time_limit():
        try:
            call()
        except InputError as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            return message
    return None
