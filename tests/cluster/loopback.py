"""A real multi-node Ray cluster on this machine, started and ended by a test.

Each node is one `ray start ... --block` process, started in a session of its own: its GCS,
raylet, dashboard, agents and workers all carry that session id (the raylet gives each worker a
process group of its own, but not a session), so the node dies with `os.killpg` of its session
leader, and its processes can be found by session id. Every node gets its own short temp dir and
ports picked here, so it never meets another Ray on the machine (the test session's embedded
one included). Token authentication is on, as on the project's real clusters: the token is made
here and handed to the nodes and to every client through the environment of their processes,
never through this process's own environment.

Job drivers are started by Ray's job supervisor in sessions of their own; the cluster finds them
by a marker variable in their environment and ends their sessions by id. `shutdown` ends
everything and reports any process that outlived it (found by session id, by the cluster's folder
in its command line, or by the marker).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
RAY = BIN / "ray"
MARKER = "KP_TEST_CLUSTER"
"""Set, with a value unique to the cluster, in the environment of every process it starts."""
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def free_ports(count: int, taken: set[int]) -> list[int]:
    """`count` distinct free ports, none of them in `taken` (which they join).

    The sockets stay bound until all are picked, so the system cannot hand out one twice.
    """
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("", 0))
            if sock.getsockname()[1] not in taken:
                ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    taken.update(ports)
    return ports


@dataclass
class Node:
    """One `ray start --block` and everything it started (one session)."""

    name: str
    process: subprocess.Popen
    temp_dir: Path
    log: Path
    killed: bool = False

    @property
    def sid(self) -> int:
        return self.process.pid  # start_new_session: the session leader

    def pids(self) -> set[int]:
        return {pid for pid, sid in _sessions().items() if sid == self.sid}

    def commands(self) -> list[str]:
        """The command lines of the node's processes (workers show their Ray title)."""
        return [_read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")
                for pid in self.pids()]

    def kill(self) -> None:
        """SIGKILL to the node's process group: `ray start`, GCS, raylet, dashboard, agents.

        The workers (process groups of their own, same session) die with their raylet.
        """
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)


@dataclass
class LoopbackCluster:
    """A head and further nodes on this machine, with token authentication on."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    marker: str = field(default_factory=lambda: secrets.token_hex(8))
    nodes: list[Node] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    """Submission ids."""
    gcs_port: int = 0
    dashboard_port: int = 0
    ports: set[int] = field(default_factory=set)
    """Every port handed to a node so far."""

    @property
    def env(self) -> dict[str, str]:
        """This machine's environment without any Ray setting, plus the cluster's own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token,
                   RAY_USAGE_STATS_ENABLED="0", **{MARKER: self.marker})
        return env

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def head(self) -> Node:
        return self.nodes[0]

    # ------------------------------------------------------------------ nodes

    def start_head(self, num_cpus: int) -> Node:
        self.gcs_port, self.dashboard_port, client_port = free_ports(3, self.ports)
        return self._start("head", num_cpus, [
            "--head", f"--port={self.gcs_port}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={client_port}",
        ])

    def add_node(self, name: str, num_cpus: int) -> Node:
        return self._start(name, num_cpus, [f"--address=127.0.0.1:{self.gcs_port}"])

    def _start(self, name: str, num_cpus: int, args: list[str]) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir()
        ports = ("node-manager-port", "object-manager-port", "metrics-export-port",
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                 "runtime-env-agent-port")
        command = [str(RAY), "start", "--block", *args, f"--num-cpus={num_cpus}",
                   "--num-gpus=0", f"--temp-dir={temp_dir}",
                   f"--object-store-memory={100 * 1024 * 1024}", "--disable-usage-stats",
                   *(f"--{flag}={port}"
                     for flag, port in zip(ports, free_ports(len(ports), self.ports),
                                           strict=True))]
        log = self.root / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        node = Node(name, process, temp_dir, log)
        self.nodes.append(node)
        return node

    def check_nodes(self) -> None:
        """Fails if a node that was not killed on purpose has ended (its log says why)."""
        for node in self.nodes:
            if not node.killed and node.process.poll() is not None:
                raise AssertionError(f"ray node {node.name} exited: {node.log.read_text()}")

    def wait_for_nodes(self, alive: int, timeout: float = 240) -> list[dict[str, Any]]:
        """Waits until the job API answers and `alive` nodes are alive; returns the nodes."""
        deadline = time.monotonic() + timeout
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.check_nodes()
            try:
                nodes = self.get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]
            except (OSError, KeyError, ValueError):
                nodes = []
            if sum(n["state"] == "ALIVE" for n in nodes) == alive:
                return nodes
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {alive} alive Ray nodes: {nodes}")

    def node_states(self) -> list[str]:
        nodes = self.get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]
        return sorted(n["state"] for n in nodes)

    # ------------------------------------------------------------------ clients

    def get(self, path: str, token: str | None = None, attempts: int = 5) -> Any:
        """A GET on the dashboard's HTTP API, with the cluster's token.

        A busy dashboard (2 shared cores) now and then drops a connection: tried again.
        """
        request = urllib.request.Request(
            self.dashboard + path,
            headers={"Authorization": f"Bearer {self.token if token is None else token}"})
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    body = response.read().decode()
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)
        return json.loads(body) if body.lstrip().startswith(("{", "[")) else body

    def ray_cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
                ) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=self.env if env is None else env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def submit(self, submission_id: str, entrypoint: list[str], working_dir: Path) -> str:
        """`ray job submit --no-wait`: the way a user starts a sweep on a cluster.

        Ray's job server answers "No available agent to submit job, please try again later"
        while no node's job agent has (re)registered with it, which happens on a loaded
        2-core machine just after a job's driver was killed: like a user, submit again (for
        up to a minute); the job was not created."""
        deadline = time.monotonic() + 60
        while True:
            done = self.ray_cli("job", "submit", "--no-wait", f"--address={self.dashboard}",
                                f"--submission-id={submission_id}",
                                f"--working-dir={working_dir}", "--", *entrypoint)
            busy = "No available agent to submit job" in done.stdout + done.stderr
            if done.returncode == 0 or not busy or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        self.jobs.append(submission_id)
        return submission_id

    def job(self, submission_id: str) -> dict[str, Any]:
        """The job's details: status, message, `driver_info` (pid) once the driver connected."""
        return self.get(f"/api/jobs/{submission_id}")

    def logs(self, submission_id: str) -> str:
        try:
            return self.get(f"/api/jobs/{submission_id}/logs")["logs"]
        except (OSError, KeyError, ValueError) as exc:
            return f"(no logs: {exc})"

    def wait_job(self, submission_id: str, timeout: float) -> dict[str, Any]:
        """Waits for a terminal state; returns the job's details."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(submission_id)
            if info["status"] in TERMINAL:
                return info
            time.sleep(1)
        raise AssertionError(f"job {submission_id} did not end in {timeout:.0f} s:\n"
                             + self.logs(submission_id)[-5000:])

    # ------------------------------------------------------------------ the end

    def processes(self) -> dict[int, str]:
        """Every live process this cluster started (pid → command line).

        Found by the session of a node, the cluster's folder in the command line (a node's
        processes), or the marker in the environment (also processes in sessions of their own,
        such as job drivers; Ray workers overwrite theirs with their process title).
        """
        sessions = {node.sid for node in self.nodes}
        found = {}
        for pid, sid in _sessions().items():
            if pid == os.getpid():
                continue
            cmdline = _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")
            ours = (sid in sessions or str(self.root) in cmdline
                    or f"{MARKER}={self.marker}".encode() in _read(pid, "environ"))
            if ours and not _zombie(pid):
                found[pid] = cmdline.strip()
        return found

    def shutdown(self, timeout: float = 90) -> dict[int, str]:
        """Ends the job drivers and the nodes by id; returns what had to be killed afterwards.

        Ray's job supervisor starts each driver (and a watcher for it) in a session of its own,
        and does not always end it when the head dies (seen with 2.60: the driver lived on until
        its GCS reconnection timed out), so those sessions are ended first.
        """
        node_sessions = {node.sid for node in self.nodes}
        started = {session_of(pid) for pid in self.processes()}
        for sid in started - node_sessions - {None, os.getsid(0)}:
            _killpg(sid)
        for node in reversed(self.nodes):
            node.kill()
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


def make_root() -> Path:
    """A short folder under /tmp: Ray's socket paths must stay under 107 characters."""
    return Path(tempfile.mkdtemp(prefix="kpc-", dir="/tmp"))


def remove_root(root: Path, keep_logs: Path | None = None) -> None:
    """Removes the cluster's folder, first copying its nodes' logs to `keep_logs`."""
    if keep_logs is not None:
        for log in root.glob("*.log"):
            keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, keep_logs / log.name)
        for logs in root.glob("*/session_latest/logs"):
            shutil.copytree(logs, keep_logs / logs.parent.parent.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets"))
    shutil.rmtree(root, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _sessions() -> dict[int, int]:
    """pid → session id of every process of this machine."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = os.getsid(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return found


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _zombie(pid: int) -> bool:
    stat = _read(pid, "stat").decode(errors="replace")
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
