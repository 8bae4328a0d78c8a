"""One driver per experiment: an OS file lock on `driver.lock` in the experiment folder.

Two drivers writing one experiment would interleave Tune's snapshots and both feed the same
study. The lock is `filelock`'s (`flock` on POSIX): the kernel, or the NFS server once the
client's lease ends, releases it when its holder dies, so `--resume` after a crash needs no
staleness guess. Beside it, `driver.json` names the holder (host, pid, start) for the error a
second driver gets; a `driver.json` found on taking the lock is a driver that ended without
releasing it (it crashed or was killed), and says so in a warning.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from kp_platform.errors import InputError
from kp_platform.tune.experiment import DRIVER_FILE, LOCK_FILE


class DriverLock:
    """The experiment's driver lock; use as a context manager, or `acquire` / `release`.

    Args:
        experiment: The experiment folder (created if missing).
    """

    def __init__(self, experiment: str | Path) -> None:
        self.path = Path(experiment) / LOCK_FILE
        self.holder_path = Path(experiment) / DRIVER_FILE
        self.record: dict[str, Any] = {}
        self._lock = FileLock(self.path, timeout=0)
        self._made: list[Path] = []

    def acquire(self) -> DriverLock:
        """Takes the lock (with a warning when the last holder died holding it).

        Raises:
            InputError: another driver holds the lock (naming its host, pid and start time).
        """
        # Folders made only for the lock go again with it: a refused sweep leaves nothing.
        self._made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            holder = read_holder(self.holder_path) or {}
            raise InputError(
                f"another sweep driver is running on this experiment (host "
                f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
                f"{holder.get('started', '?')}); wait for it, or stop it first",
                str(self.path)) from None
        previous = read_holder(self.holder_path)
        if previous is not None:
            sys.stderr.write(
                f"warning: {self.path}: the last driver (host {previous.get('host')}, pid "
                f"{previous.get('pid')}, started {previous.get('started')}) ended without "
                "releasing the experiment (it crashed or was killed); taking it over\n")
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        # Written aside, then renamed: a second driver never reads half a record.
        temp = self.holder_path.with_name(f"{DRIVER_FILE}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(self.record))
        os.replace(temp, self.holder_path)
        return self

    def release(self) -> None:
        """Removes the holder record and releases the lock."""
        if not self._lock.is_locked:
            return
        self.holder_path.unlink(missing_ok=True)
        if self._made:
            # The folder is this driver's own (it made it); nobody else can wait on its lock.
            self.path.unlink(missing_ok=True)
        self._lock.release()
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break  # the sweep wrote something there: keep it (and its parents)

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def read_holder(path: str | Path) -> dict[str, Any] | None:
    """The holder record, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
