"""One driver per experiment: a lock file in the experiment folder, with a heartbeat.

Two drivers writing one experiment would interleave Tune's snapshots and both feed the same
study. The lock file (`driver.lock`, JSON: host, pid, start time, heartbeat) is created with
O_CREAT | O_EXCL, which is atomic on local disks and on NFS v3+, and a thread refreshes its
heartbeat every `HEARTBEAT_S`. A lock whose driver is gone is taken over with a warning, so that
`--resume` after a crash works: its pid no longer runs on this host, or (another host, which
cannot be asked) its heartbeat is older than `STALE_S`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kp_platform.errors import InputError
from kp_platform.tune.experiment import LOCK_FILE

HEARTBEAT_S = 10.0
STALE_S = 60.0


class DriverLock:
    """The experiment's driver lock; use as a context manager, or `acquire` / `release`.

    Args:
        experiment: The experiment folder (created if missing).
        heartbeat_s: Seconds between heartbeats.
        stale_s: A heartbeat older than this marks a lock as left behind.
    """

    def __init__(self, experiment: str | Path, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S) -> None:
        self.path = Path(experiment) / LOCK_FILE
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.record: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made: list[Path] = []

    def acquire(self) -> DriverLock:
        """Takes the lock, or takes over one left by a dead driver (with a warning).

        Raises:
            InputError: another driver holds the lock (naming its host, pid and start time).
        """
        # Folders made only for the lock go again with it: a refused sweep leaves nothing.
        self._made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "start": now,
                       "started": _iso(now), "heartbeat": now}
        for _ in range(3):  # a lock that vanishes or goes stale meanwhile: try again
            if self._create():
                break
            holder = read_lock(self.path)
            if holder is None:
                continue  # released (or half-written by a takeover) just now
            why = self.stale_reason(holder)
            if why is None:
                raise InputError(
                    f"another sweep driver is running on this experiment (host "
                    f"{holder.get('host')}, pid {holder.get('pid')}, started "
                    f"{holder.get('started')}); wait for it, or stop it first", str(self.path))
            if self._take_over(holder):
                sys.stderr.write(f"warning: {self.path}: taking over the lock of a driver "
                                 f"that is gone (host {holder.get('host')}, pid "
                                 f"{holder.get('pid')}, started {holder.get('started')}: "
                                 f"{why})\n")
                break
        else:
            raise InputError("could not take the driver lock (other drivers keep racing for "
                             "it)", str(self.path))
        self._thread = threading.Thread(target=self._beat, name="kp-driver-lock", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stops the heartbeat and removes the lock, if it is still this driver's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        holder = read_lock(self.path)
        if holder is not None and self._is_mine(holder):
            self.path.unlink(missing_ok=True)
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break  # the sweep wrote something there: keep it (and its parents)

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why `holder`'s driver is gone, or None when it may still run."""
        age = time.time() - float(holder.get("heartbeat", 0))
        if holder.get("host") == socket.gethostname() and not pid_running(holder.get("pid")):
            return "its process no longer runs"
        if age > self.stale_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(self.record, handle)
        return True

    def _take_over(self, holder: dict[str, Any]) -> bool:
        """Moves the stale lock aside (an atomic rename: one racer wins) and creates ours."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another driver moved it first
        moved = read_lock(aside)
        if moved is not None and not _same(moved, holder):
            # What we moved is a fresh lock that a faster racer created meanwhile: give it back.
            os.rename(aside, self.path)
            return False
        aside.unlink(missing_ok=True)
        return self._create()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            holder = read_lock(self.path)
            if holder is None or not self._is_mine(holder):
                return  # taken over (we were thought dead): never overwrite the new holder
            self.record["heartbeat"] = time.time()
            # Written aside, then renamed: a reader never sees half a file.
            temp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
            temp.write_text(json.dumps(self.record))
            os.replace(temp, self.path)

    def _is_mine(self, holder: dict[str, Any]) -> bool:
        return _same(holder, self.record)


def read_lock(path: str | Path) -> dict[str, Any] | None:
    """The lock's record, or None when it is missing or unreadable (being replaced)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_running(pid: Any) -> bool:
    """Whether process `pid` exists on this host (a zombie counts as gone)."""
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("host", "pid", "start"))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
