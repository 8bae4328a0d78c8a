"""Reading back what an offline wandb run recorded, for tests.

wandb 0.31 has no public reader for `run-<id>.wandb`; the file is a LevelDB-style log (a 7-byte
`:W&B` header, then 32 KiB blocks of records with a 7-byte header each: CRC, length, type) whose
payloads are `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_FILE_HEADER = 7
_RECORD_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run holds."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    """Logged artifacts: name, type, aliases, metadata, use (True for use_artifact)."""
    exit_code: int | None = None
    """From the run's exit record; None: the run was never closed."""

    def metric(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def _payloads(data: bytes) -> list[bytes]:
    assert data[:4] == b":W&B", "not a wandb run file"
    records, pending, offset = [], b"", _FILE_HEADER
    while offset + _RECORD_HEADER <= len(data):
        room = _BLOCK - offset % _BLOCK
        if room < _RECORD_HEADER:  # the block's tail is padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + _RECORD_HEADER])
        chunk = data[offset + _RECORD_HEADER : offset + _RECORD_HEADER + length]
        offset += _RECORD_HEADER + length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
            pending = b""
        else:  # zero padding at the end of a file still being written
            break
    return records


def read_offline_run(run_folder: str | Path) -> OfflineRun:
    """Parses `offline-run-*/run-*.wandb` in `run_folder`."""
    folder = Path(run_folder)
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(path)
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group, run.job_type = record.run.run_group, record.run.job_type
            for item in record.run.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "artifact":
            art = record.artifact
            run.artifacts.append({
                "name": art.name, "type": art.type, "aliases": list(art.aliases),
                "metadata": json.loads(art.metadata) if art.metadata else {}, "use": False,
            })
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "use_artifact":
            run.artifacts.append({"name": record.use_artifact.name,
                                  "type": record.use_artifact.type, "use": True})
    return run


def offline_runs(wandb_dir: str | Path) -> list[OfflineRun]:
    """Every offline run under a `wandb/` folder, oldest first."""
    return [read_offline_run(p) for p in sorted(Path(wandb_dir).glob("offline-run-*"))]


def closed_offline_runs(wandb_dir: str | Path, count: int, timeout_s: float = 30.0
                        ) -> list[OfflineRun]:
    """`offline_runs`, once `count` runs are there and closed (wandb's writer flushes a run's
    file after `finish()` returns); what is there at the timeout otherwise."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        runs = offline_runs(wandb_dir)
        done = len(runs) >= count and all(run.exit_code is not None for run in runs)
        if done or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)
