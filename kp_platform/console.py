"""What reaches the user's terminal from the libraries `kp` drives.

`kp` prints what it chose itself (the `auto` defaults, the sweep's events); Lightning's banner
(GPU/TPU availability, tips), logged at INFO through its rank-zero logger, only buries that.
Warnings still come through. Set by logger name, so Lightning need not be imported here.
"""

from __future__ import annotations

import logging

LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"
"""Lightning's rank-zero logger: the GPU/TPU lines and tips at INFO."""


def quiet_library_info(*loggers: str) -> None:
    """Raises Lightning's rank-zero logger, and `loggers`, to WARNING."""
    for name in (LIGHTNING_INFO, *loggers):
        logging.getLogger(name).setLevel(logging.WARNING)
