"""Where a sweep's Optuna study lives: SQLite in the experiment folder, or an RDB such as
PostgreSQL whose password is given by reference (an environment variable or a file).

The password never enters a URL: Tune pickles the searcher (and with it Optuna's storage object,
URL included) into the experiment folder, and a `ray job submit` entrypoint is shown by
`ray job list`. The storage object holds only the *name* of the variable or file; the driver
reads the password each time it opens a database connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kp_platform.errors import InputError
from kp_platform.tune.experiment import DEFAULT_DB, STUDY_FILE

"""Written into the experiment folder: where the study is (never the password), so that
`kp sweep report` and `kp sweep dashboard` find it."""
# The psycopg 3 driver: plain `postgresql://` means psycopg2 to SQLAlchemy.
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


@dataclass(frozen=True)
class StudyLocation:
    """A study's storage URL (no password), its name, and where its password comes from."""

    url: str
    study_name: str
    password_env: str | None = None
    password_file: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def display_url(self) -> str:
        """The URL as the user wrote it, for messages."""
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)


def study_location(spec: Any) -> StudyLocation:
    """The study of sweep `spec` (a `SweepSpec`): its `search.storage` or SQLite by default."""
    search = spec.search
    if not search.storage:
        return StudyLocation(f"sqlite:///{spec.experiment_dir / DEFAULT_DB}", spec.name)
    return StudyLocation(driver_url(search.storage), spec.name, search.storage_password_env,
                         search.storage_password_file)


def driver_url(url: str) -> str:
    """`postgresql://...` with the driver this project installs (psycopg 3) spelled out."""
    scheme, sep, rest = url.partition("://")
    return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"


def check_storage_url(url: str, source: str) -> None:
    """Refuses a storage URL that SQLAlchemy cannot parse or that carries a password.

    The message never repeats the URL: it may hold the very password it refuses.

    Raises:
        InputError: naming `source` and `search.storage`.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(driver_url(url))
    except (ArgumentError, ValueError):
        raise InputError("search.storage: not a database URL (expected e.g. "
                         "postgresql://user@host:5432/db)", source) from None
    if parsed.password is not None or "password" in parsed.query:
        raise InputError(
            "search.storage: the URL holds a password; a YAML file or a command line is no "
            "place for it (Tune pickles the URL into the experiment, `ray job list` shows "
            "entrypoints): give the password through search.storage_password_env or "
            "search.storage_password_file, or libpq's PGPASSWORD / ~/.pgpass", source)


def read_password(location: StudyLocation, source: str | None = None) -> str | None:
    """The password from the variable or file the sweep names; None when it names neither.

    Raises:
        InputError: the variable is unset or empty, or the file cannot be read.
    """
    if location.password_env:
        value = os.environ.get(location.password_env)
        if not value:
            raise InputError(f"search.storage_password_env: the environment variable "
                             f"{location.password_env} is not set (or empty)", source)
        return value
    if location.password_file:
        try:
            value = Path(location.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InputError(f"search.storage_password_file: cannot read "
                             f"{location.password_file} ({exc.strerror})", source) from None
        if not value:
            raise InputError(f"search.storage_password_file: {location.password_file} is "
                             "empty", source)
        return value
    return None


class PasswordConnect:
    """SQLAlchemy `creator`: opens a psycopg connection, reading the password only then.

    Picklable, and its pickle holds the connection parameters and the *name* of the password's
    variable or file, never the password (Tune pickles the searcher, and with it this object).

    Args:
        location: The study's location (a PostgreSQL URL without a password).
    """

    def __init__(self, location: StudyLocation) -> None:
        from sqlalchemy.engine import make_url

        url = make_url(location.url)
        self.params: dict[str, Any] = url.translate_connect_args(username="user",
                                                                 database="dbname")
        self.params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
        self.location = location

    def __call__(self) -> Any:
        import psycopg

        return psycopg.connect(**self.params, password=read_password(self.location))


class SqliteConnect:
    """SQLAlchemy `creator` for a study on this machine's disk: write-ahead logging, and an
    fsync per checkpoint of the log instead of one per commit.

    The sweep's driver commits several times per trial (the suggestion's parameters, each
    evaluation's AP, the final state); SQLite's default journal fsyncs every commit, which
    was most of the driver's time in the study at scale (benchmarks/RESULTS.md). After a power
    cut the last commits may be lost, never the database; readers (`kp sweep report`, the
    dashboard) no longer block the driver. Only for local disks: WAL needs shared memory
    between the processes that open the file, which a network filesystem does not give.

    Args:
        path: The database file.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> Any:
        import sqlite3

        connection = sqlite3.connect(self.path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection


def open_storage(location: StudyLocation, local_disk: bool = False) -> Any:
    """Optuna's RDB storage for `location`, reading the password (if any) per connection.

    Args:
        local_disk: The SQLite file is on this machine's own disk (`SqliteConnect`).
    """
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if location.is_sqlite and local_disk:
        from sqlalchemy.engine import make_url

        engine_kwargs["creator"] = SqliteConnect(str(make_url(location.url).database))
    if location.url.startswith("postgresql+psycopg") and (location.password_env
                                                         or location.password_file):
        engine_kwargs["creator"] = PasswordConnect(location)
    # Connections are checked before use: a long sweep outlives the server's idle timeouts.
    if not location.is_sqlite:
        engine_kwargs["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(location.url, engine_kwargs=engine_kwargs)


def write_study_file(location: StudyLocation, experiment: Path) -> Path:
    """Records where the study is (URL, study name, password *source*) in the experiment."""
    path = experiment / STUDY_FILE
    data = {"url": location.display_url, "study_name": location.study_name,
            "password_env": location.password_env, "password_file": location.password_file}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def experiment_study(experiment: str | Path) -> StudyLocation | None:
    """The study of an experiment folder: from its `study.yaml`, else its `optuna.db`, if any.

    Raises:
        InputError: a damaged `study.yaml`.
    """
    experiment = Path(experiment)
    path = experiment / STUDY_FILE
    if path.is_file():
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or not data.get("url") or not data.get("study_name"):
            raise InputError("expected url and study_name", str(path))
        return StudyLocation(driver_url(str(data["url"])), str(data["study_name"]),
                             data.get("password_env"), data.get("password_file"))
    if (experiment / DEFAULT_DB).is_file():
        return StudyLocation(f"sqlite:///{experiment / DEFAULT_DB}", experiment.name)
    return None
