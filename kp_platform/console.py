"""What reaches the user's terminal from the libraries `kp` drives.

`kp` prints what it chose itself (the `auto` defaults, the sweep's events); Lightning's banner
(GPU/TPU availability, tips), logged at INFO through its rank-zero logger, only buries that.
Lightning 2.6 also builds torch's deprecated `LeafSpec` whenever it flattens a batch or a
metric (a FutureWarning per evaluation that no user can act on): ignored for that Lightning
module alone, by category and module. Every other warning still comes through. Set by logger
and module name, so Lightning need not be imported here. `logger_level` quiets a library's
logger for one block only (Tune's controller and experiment reader while a sweep runs and is
read back), where `kp` says the same thing in its own words.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"
"""Lightning's rank-zero logger: the GPU/TPU lines and tips at INFO."""
LIGHTNING_PYTREE = "pytorch_lightning.utilities._pytree"
"""Lightning's copy of torch's pytree helpers, which builds torch's deprecated `LeafSpec`."""
TUNE_CONTROLLER = "ray.tune.execution.tune_controller"
"""Ray Tune's controller: it logs each failed trial attempt with its traceback, which the
trial's error.txt keeps and `kp sweep run` names in one line at the end."""
RAY_ANALYSIS = "ray.tune.analysis.experiment_analysis"
"""Tune's reader of an experiment folder: it warns, with a path and an exception, about each
trial that left no result file, which is a trial the sweep's time budget ended before its first
evaluation; the sweep's progress line and `kp sweep report` already say so in words."""


def quiet_library_info(*loggers: str) -> None:
    """Raises Lightning's rank-zero logger, and `loggers`, to WARNING; ignores the
    FutureWarnings raised from Lightning's pytree module."""
    for name in (LIGHTNING_INFO, *loggers):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning,
                            module=re.escape(LIGHTNING_PYTREE))


@contextmanager
def logger_level(name: str, level: int) -> Iterator[None]:
    """Inside the block, the logger `name` passes only records at `level` and above; after it,
    its level is what it was."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
