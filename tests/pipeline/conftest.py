"""Pipeline fixtures: the shipped tiny pipeline file as data, and a writer for variants of it."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "search_spaces" / "pipelines" / "tiny.yaml"


def tiny_data() -> dict[str, Any]:
    """The shipped tiny pipeline, its file paths made absolute (tests run from any folder)."""
    data = yaml.safe_load(TINY.read_text())
    for stage in data["stages"]:
        for kind in ("sweep", "train"):
            if stage.get(kind):
                stage[kind] = str(REPO / stage[kind])
    return copy.deepcopy(data)


def write_pipeline(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pipeline_ray() -> Iterator[None]:
    """A Ray for the pipeline module (reused when one runs), shut down after it.

    Kept apart from the sweep tests' `ray_session`: this module also trains on the driver, and
    its workers are best not reused by sweeps that check their trials' wandb runs.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    temp_dir = tempfile.mkdtemp(prefix="kpray-", dir="/tmp")  # short: socket paths < 107 chars
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 * 1024,
             _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
