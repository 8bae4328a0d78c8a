"""Pipeline fixtures: the shipped tiny pipeline file as data, and a writer for variants of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

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
