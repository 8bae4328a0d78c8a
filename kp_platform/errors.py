"""The exception types the CLI turns into one line on stderr instead of a traceback.

``InputError`` (bad user input) gives ``error: ...`` and exit status 2; library users can catch
it like any ``ValueError``. ``ExternalError`` (a subprocess or network service the command
relies on failed) gives ``error: ...`` and exit status 1.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, a config key, a dataset item.

    Args:
        message: What is wrong, in one line.
        source: The file (or config key) it concerns, named first in the message.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        super().__init__(one_line(f"{source}: {message}" if source else message))


# Every character str.splitlines() breaks at, written as an escape instead: a value quoted from
# a user's file (an id, a file name) must not break the one-line error.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (\\n, \\r, ...), so that it prints as one line."""
    return text.translate(_LINE_BREAKS)


class ExternalError(RuntimeError):
    """A tool or service the command relies on failed: a subprocess, the network, a cluster.

    Args:
        message: What failed, in one line.
        source: The file, folder or address it concerns, named first in the message.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        message = " ".join(message.split())  # one line, whatever the tool printed
        super().__init__(f"{source}: {message}" if source else message)


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first non-empty line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
