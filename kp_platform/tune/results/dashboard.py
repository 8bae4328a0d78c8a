"""`kp sweep dashboard DIR`: optuna-dashboard on a sweep's study, on this machine's loopback.

The dashboard has no authentication and can edit the study (notes, trial states), so it is
bound to 127.0.0.1 only; from a laptop it is reached through an SSH tunnel, as the Ray
dashboard is.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from kp_platform.errors import InputError
from kp_platform.tune.experiment import STUDY_FILE
from kp_platform.tune.storage import experiment_study, open_storage, read_password

HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def serve_dashboard(experiment: str | Path, port: int = DEFAULT_PORT) -> None:
    """Serves optuna-dashboard for the study of `experiment` until interrupted.

    Args:
        experiment: A sweep's experiment folder (its `study.yaml`, or its `optuna.db`).
        port: The loopback port to listen on.

    Raises:
        InputError: not a sweep folder, a password that cannot be read, a port in use.
    """
    location = experiment_study(experiment)
    if location is None:
        raise InputError("no Optuna study here (neither study.yaml nor optuna.db): not a "
                         "sweep experiment folder", str(experiment))
    read_password(location, str(Path(experiment) / STUDY_FILE))
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be 1-65535 (got {port})", "kp sweep dashboard")
    _check_port_free(port)
    storage = open_storage(location)
    url = f"http://{HOST}:{port}/"
    print(f"optuna-dashboard on study {location.study_name!r} ({location.display_url}): {url}")
    print(f"from a laptop: ssh -N -L {port}:{HOST}:{port} USER@{socket.gethostname()}  "
          f"then open http://localhost:{port}/ (Ctrl-C stops the dashboard)")
    sys.stdout.flush()
    from optuna_dashboard import run_server

    run_server(storage, host=HOST, port=port)


def _check_port_free(port: int) -> None:
    """A taken port is the user's to change: one line, not the server's traceback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((HOST, port))
    except OSError as exc:
        raise InputError(f"--port {port}: cannot listen on {HOST}:{port} ({exc.strerror}); "
                         "choose another port", "kp sweep dashboard") from None
    finally:
        probe.close()
