"""Sweep fixtures: tiny search-space files, a PostgreSQL server (the Ray session is in
tests/conftest.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CHANNELS
from tests.tune.postgres import PostgresServer, missing_binaries, start_postgres


def space_data(synth_data: dict[str, Path] | None, storage: Path, **settings: Any
               ) -> dict[str, Any]:
    """A tiny sweep (unet_tiny, 32x32, wandb off) as YAML data; `settings` replace sections."""
    overrides: dict[str, Any] = {
        "data.channels": CHANNELS,
        "data.input_size": [32, 32],
        "data.batch_size": 8,
        "model.backbone": "unet_tiny",
        "trainer.accelerator": "cpu",
        # near the head prior, so even a barely trained net detects (non-zero AP)
        "eval.score_floor": 0.001,
    }
    if synth_data is not None:
        overrides["data.train"] = str(synth_data["train"])
        overrides["data.val"] = str(synth_data["val"])
    data: dict[str, Any] = {
        "name": "t",
        "base": {"overrides": overrides},
        "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-2]}},
        "metric": "val/map",
        "mode": "max",
        "search": {"seed": 0, "startup_trials": 10},
        "asha": {"grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        "eval_every": 1,
        "num_samples": 2,
        "max_concurrent": 2,
        "resources": {"cpu": 1, "gpu": 0},
        "storage_path": str(storage),
        "max_failures": 0,
        "wandb": {"mode": "disabled"},
        "ray": {"num_cpus": 2, "object_store_mb": 300},
    }
    data.update(copy.deepcopy(settings))
    return data


def write_space(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 server on a loopback port (tests/tune/postgres.py), one per session."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    yield from start_postgres()
