"""The typed sections of a search-space file (`search`, `asha`, `resources`, `wandb`, `ray`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SAMPLERS = ("tpe", "random", "gp")


@dataclass
class SearchSettings:
    """Optuna's search: the sampler and where the study lives."""

    seed: int = 0
    startup_trials: int = 10
    """Random trials before TPE models the results."""
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    """Parameter values to try first (after the base config's, see `evaluate_base`)."""
    evaluate_base: bool = True
    """The base config's own values are the first trial."""
    storage: str | None = None
    """An RDB URL for the study (`postgresql://user@host:port/db`, without a password);
    empty: SQLite `optuna.db` in the experiment folder."""
    storage_password_env: str | None = None
    """The environment variable that holds the database password (read by the driver only)."""
    storage_password_file: str | None = None
    """A file whose content is the database password (e.g. a mounted Kubernetes Secret).
    Neither set: libpq's own PGPASSWORD / ~/.pgpass, if any."""
    allow_sqlite_on_shared_storage: bool = False
    """Keep the SQLite study on a cluster or a network filesystem (SQLite's locking is unreliable
    there; only for a one-machine "cluster")."""
    sampler: str = "tpe"
    """tpe (default), random, or gp (Gaussian process: seconds per suggestion, see
    benchmarks/RESULTS.md; conditional parameters are sampled at random)."""
    n_ei_candidates: int = 24
    """TPE: candidates drawn per suggestion (Optuna's default); the cost of a suggestion grows
    with it."""
    multivariate: bool = False
    """TPE: model the parameters jointly (Optuna's multivariate TPE) instead of one by one."""

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "startup_trials": (self.startup_trials >= 0, "must be >= 0"),
            "sampler": (self.sampler in SAMPLERS, f"must be one of {', '.join(SAMPLERS)}"),
            "n_ei_candidates": (self.n_ei_candidates >= 1, "must be >= 1"),
            "storage_password_file": (
                not (self.storage_password_env and self.storage_password_file),
                "and search.storage_password_env are alternatives: set one"),
        }


@dataclass
class AshaSettings:
    """ASHA on evaluation epochs: rungs at grace_period * reduction_factor**k epochs."""

    grace_period: int = 2
    reduction_factor: int = 2
    max_epochs: int = 10

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "grace_period": (self.grace_period >= 1, "must be >= 1"),
            "reduction_factor": (self.reduction_factor >= 2, "must be an integer >= 2"),
            "max_epochs": (self.max_epochs >= 1, "must be >= 1"),
        }


@dataclass
class Resources:
    """What one trial asks of the Ray cluster (fractions allowed)."""

    cpu: float = 1.0
    gpu: float = 0.0
    """A fraction packs trials on one GPU (0.25: four); N > 1 runs a trial on N GPUs (DDP)."""
    accelerator_type: str | None = None
    """Only nodes with this GPU type (Ray's `accelerator_type:<TYPE>` resource, e.g. A100)."""
    check_cluster: bool = True
    """Refuse a request no node of the running cluster can hold (it would stay PENDING forever).
    Turn off on an autoscaling cluster whose GPU nodes are not up yet."""

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {"cpu": (self.cpu > 0, "must be > 0"), "gpu": (self.gpu >= 0, "must be >= 0"),
                "accelerator_type": (self.accelerator_type is None or self.gpu > 0,
                                     "needs resources.gpu > 0")}


@dataclass
class WandbSettings:
    """One wandb run per trial (job type `trial`) plus the registration run."""

    project: str | None = None
    """Default: the base config's `logging.wandb.project`."""
    group: str | None = None
    """Default: the sweep's name."""
    mode: str | None = None
    """offline, online or disabled; default: the base config's `logging.wandb.mode`."""
    entity: str | None = None
    registry: str | None = None
    """Where `kp sweep sync` links the best model when online, e.g. `wandb-registry-model/kp`."""

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {"mode": (self.mode in (None, "offline", "online", "disabled"),
                         "must be offline, online or disabled")}


@dataclass
class RaySettings:
    """The embedded local Ray (ignored when `RAY_ADDRESS` names a cluster)."""

    num_cpus: int | None = None
    """Default: every core of this machine."""
    num_gpus: int | None = None
    """Default: the GPUs Ray finds on this machine. Fewer leaves GPUs to other work; more
    advertises GPUs the machine lacks (trials then only hold a share of one: the GPU check's
    CPU smoke run packs trials that way)."""
    object_store_mb: int = 512
