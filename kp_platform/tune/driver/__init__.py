"""The driver: the Tune loop (Ray embedded or a cluster), the Optuna searcher, ASHA with its rung
records, the driver lock, trial resources and the clean stop of trials Tune ends."""

import os

SLOW_STEP_WARNING_S = 5.0
"""Tune warns of a loop step slower than this (`TUNE_WARN_THRESHOLD_S`, Ray's setting; 0.5 s by
default): on 2 CPU cores printing the status table at the sweep's end takes half a second, and
the warning is then noise. Set here because Tune reads it when `ray.tune` is first imported,
and every driver module imports it; a value the user set is kept."""
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", str(SLOW_STEP_WARNING_S))
