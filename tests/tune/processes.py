"""Subprocesses of the tests: `kp` in its own process, a free loopback port, optuna-dashboard's
study list, and stopping a process by its pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def kp_command(*argv: str) -> list[str]:
    """`kp ARGV...` run by this interpreter (the `kp` script may not be on PATH)."""
    return [sys.executable, "-m", "kp_platform.cli.main", *argv]


def env_with_repo(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra`, with the repository importable."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch_studies(port: int, server: subprocess.Popen, timeout: float = 90) -> list[dict]:
    """optuna-dashboard's study list (`GET /api/studies`), once the server answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                        timeout=5) as reply:
                return json.loads(reply.read())["study_summaries"]
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the dashboard did not answer: {server.communicate()}")
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> tuple[str, str]:
    """Stops a server by its pid (SIGINT, as Ctrl-C; SIGKILL if it lingers); its output."""
    if server.poll() is None:
        os.kill(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
    return server.communicate()
