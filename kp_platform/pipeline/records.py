"""Stage markers: `<pipeline>/<stage>/stage.json`, written when a stage completes.

A marker holds the stage's result (best checkpoint, its wandb artifact, its config, its score)
and the plan it ran (the stage's resolved definition plus the completion times of the stages it
used). A re-run skips a stage whose marker holds the same plan; a stage whose plan changed runs
again rather than silently passing on results of another definition.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kp_platform.errors import InputError
from kp_platform.files import read_json

MARKER = "stage.json"


@dataclass
class StageRecord:
    """What a completed stage left behind. Paths are relative to the pipeline folder, so the
    folder can be moved or mounted elsewhere."""

    stage: str
    kind: str
    plan: dict[str, Any]
    finished: str = ""
    checkpoint: str | None = None
    """The best checkpoint (sweep: the registered copy; train: `checkpoints/best.ckpt`)."""
    artifact: str | None = None
    """The wandb artifact the checkpoint was logged as (`<sweep>-best`, `<run>-model`)."""
    config: dict[str, Any] | None = None
    """The resolved config stored in the checkpoint."""
    score: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    """Named files and folders: the experiment or run directory, results, plot."""

    def checkpoint_path(self, folder: Path) -> Path | None:
        return folder / self.checkpoint if self.checkpoint else None


def normalise_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan as JSON would give it back (tuples become lists), for comparison."""
    return json.loads(json.dumps(plan, default=str))


def read_record(stage_dir: Path) -> StageRecord | None:
    """The stage's marker, or None when the stage has not completed."""
    path = stage_dir / MARKER
    if not path.is_file():
        return None
    data = read_json(path)
    names = {f.name for f in dataclasses.fields(StageRecord)}
    if not isinstance(data, dict) or not {"stage", "kind", "plan"} <= set(data):
        raise InputError("not a stage marker; delete it to run the stage again", str(path))
    return StageRecord(**{k: v for k, v in data.items() if k in names})


def write_record(stage_dir: Path, record: StageRecord) -> Path:
    """Writes the marker atomically: a crash leaves the old marker or none, never half of one."""
    record.finished = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    record.plan = normalise_plan(record.plan)
    stage_dir.mkdir(parents=True, exist_ok=True)
    path = stage_dir / MARKER
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(dataclasses.asdict(record), indent=2) + "\n")
    os.replace(partial, path)
    return path


def relative(path: str | Path, folder: Path) -> str:
    """`path` relative to the pipeline folder when inside it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)
