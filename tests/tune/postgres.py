"""A real PostgreSQL server for the tests, started and stopped by the test session itself.

Debian's PostgreSQL 15 (`initdb`, `pg_ctl`, `postgres` in /usr/lib/postgresql/15/bin) in a data
folder of its own, on a free loopback port, with password (SCRAM) authentication for a role
`kp`. The server refuses to run as root, so when the tests run as root it runs as the
`postgres` user (`runuser`). It is stopped by its data folder's postmaster pid, never by name.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("KP_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROLE = "kp"
DATABASE = "kp_sweeps"


@dataclass
class PostgresServer:
    """A running server: its URL (no password), the role's password and where it lives."""

    url: str
    password: str
    port: int
    data: Path
    pid: int


def missing_binaries() -> str | None:
    """Why the server cannot be started here, or None."""
    absent = [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).is_file()]
    if absent:
        return f"PostgreSQL binaries not found in {PG_BIN}: {', '.join(absent)}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def start_postgres() -> Iterator[PostgresServer]:
    """Starts the server, yields it, and stops it (by its pid) afterwards."""
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="kppg-", dir="/tmp"))
    data, log, pwfile = root / "data", root / "server.log", root / "pwfile"
    password = secrets.token_hex(16)
    pwfile.write_text(password + "\n")
    if owner:
        user = pwd.getpwnam(owner)
        for path in (root, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(root, 0o700)
    os.chmod(pwfile, 0o600)
    port = _free_port()
    pid = 0
    try:
        subprocess.run(_as_owner([str(PG_BIN / "initdb"), "-D", str(data), "-U", ROLE,
                                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                  "--no-sync"], owner), check=True, capture_output=True)
        pwfile.unlink()
        # Loopback only; the socket folder is the data folder (not /var/run/postgresql).
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off "
                   "-c max_connections=60 -c shared_buffers=16MB")
        subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log),
                                  "-o", options, "-w", "-t", "60", "start"], owner),
                       check=True, capture_output=True)
        pid = int((data / "postmaster.pid").read_text().split()[0])
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=ROLE, dbname="postgres",
                             password=password, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield PostgresServer(f"postgresql://{ROLE}@127.0.0.1:{port}/{DATABASE}", password,
                             port, data, pid)
    finally:
        if pid:
            _stop(pid, data, owner)
        shutil.rmtree(root, ignore_errors=True)


def _stop(pid: int, data: Path, owner: str | None) -> None:
    """pg_ctl's fast shutdown; the postmaster's pid is signalled directly if that fails."""
    done = subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "-t", "30", "stop"], owner), capture_output=True)
    if done.returncode == 0:
        return
    try:
        os.kill(pid, signal.SIGQUIT)  # the postmaster's immediate shutdown
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
