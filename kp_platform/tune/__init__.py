"""Sweeps: search-space files, the thin trainable, the Tuner, the Optuna bridge and reports.

Ray, Optuna and wandb are imported inside the functions that need them.
"""

from kp_platform.tune.parameters import Parameter
from kp_platform.tune.space import SweepSpec, load_space

__all__ = ["Parameter", "SweepSpec", "load_space"]
