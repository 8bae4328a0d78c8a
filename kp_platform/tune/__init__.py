"""Sweeps, grouped by when the code runs: `spec` (before Ray: the search-space file and the
pre-flight), `driver` (the Tune loop, searcher, ASHA, lock), `trial` (inside a Ray worker) and
`results` (report, importances, plots, registration, dashboard). `experiment` (the experiment
folder's file names) and `storage` (where the Optuna study lives) serve all four.

Ray, Optuna and wandb are imported inside the functions that need them.
"""

from kp_platform.tune.spec.parameters import Parameter
from kp_platform.tune.spec.space import SweepSpec, load_space

__all__ = ["Parameter", "SweepSpec", "load_space"]
