"""The one exception type for bad user input.

The CLI turns it into a one-line ``error: ...`` on stderr and exit status 2; library users can
catch it like any ``ValueError``.
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
        super().__init__(f"{source}: {message}" if source else message)
