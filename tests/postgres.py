"""A throwaway PostgreSQL cluster for the store tests: ``initdb`` in a temp folder, trust logins,
listening on a unix socket in that folder only (no port, nothing reachable from outside).

``CHATEDIT_TEST_POSTGRES`` (a ``postgresql://`` URL to a server whose user may create databases)
is used when set: CI starts one cluster for the whole run (``python tests/postgres.py start DIR``
prints its URL; ``stop DIR`` stops it). Otherwise the first test that asks starts one and it is
stopped when the tests end. Every test gets a database of its own.

The server's programs are found by ``CHATEDIT_PG_BIN``, ``pg_config --bindir``, Debian's
``/usr/lib/postgresql/<version>/bin`` or the ``PATH``. ``initdb`` refuses to run as root: as root,
the cluster is run as the ``postgres`` user (Debian's package creates it) through ``runuser``.
Without a server the PostgreSQL tests are skipped, saying why; with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

USER = "chatedit"  # the cluster's superuser
START_TIMEOUT_S = 60


class NoServer(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def find_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``."""
    candidates = [os.environ.get("CHATEDIT_PG_BIN")]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip() if out.returncode == 0 else None)
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).resolve().parent) if initdb else None)
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise NoServer("PostgreSQL's initdb and pg_ctl were not found (apt-get install postgresql, or set CHATEDIT_PG_BIN)")


def _as_owner(folder: Path) -> list[str]:
    """The command prefix that runs the server's programs: nothing, or ``runuser`` to ``postgres`` as root."""
    if os.geteuid() != 0:
        return []
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise NoServer("running as root, and there is no postgres user to run initdb as") from None
    if not shutil.which("runuser"):
        raise NoServer("running as root, and there is no runuser to run initdb as postgres")
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def start(folder: Path) -> str:
    """Creates and starts a cluster in ``folder`` (empty or new); returns its URL."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if len(str(folder)) > 90:  # a unix socket's path is at most 107 bytes
        raise NoServer(f"{folder} is too long a path for the server's socket")
    bindir, prefix = find_bin(), _as_owner(folder)
    steps = [
        [*prefix, str(bindir / "initdb"), "-D", str(folder / "data"), "-U", USER, "-A", "trust", "-E", "UTF8",
         "--locale=C", "--no-sync"],
        [*prefix, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w",
         "-t", str(START_TIMEOUT_S), "-o", f"-k {folder} -c listen_addresses='' -F", "start"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            log = folder / "server.log"
            tail = log.read_text()[-1000:] if log.exists() else ""
            raise NoServer(f"{Path(step[len(prefix)]).name} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-1000:]} {tail}".strip())
    return f"postgresql://{USER}@/postgres?host={folder}"


def stop(folder: Path) -> None:
    """Stops the cluster in ``folder`` (at once: its data is thrown away) and removes the folder."""
    folder = Path(folder).resolve()
    if (folder / "data" / "postmaster.pid").exists():
        subprocess.run([*_as_owner(folder), str(find_bin() / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skips the test (a module, at its import) saying why; fails it where CI requires PostgreSQL."""
    reason = f"no PostgreSQL for the store tests: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_driver() -> None:
    """psycopg, or a skip (a failure in CI) that says how to install it."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        unavailable(f"{error.name} is not installed (pip install -e .[postgresql])")


_server: dict[str, str] = {}  # "url", or "error": one try per test run


def server_url() -> str:
    """The URL of a server the tests may create databases on: ``CHATEDIT_TEST_POSTGRES``, or a
    cluster started once for this test run; skips (fails with ``CI=true``) when there is none."""
    require_driver()
    if os.environ.get("CHATEDIT_TEST_POSTGRES"):
        return os.environ["CHATEDIT_TEST_POSTGRES"]
    if not _server:
        folder = Path(tempfile.mkdtemp(prefix="chatedit-pg-"))
        try:
            _server["url"] = start(folder)
            atexit.register(stop, folder)
        except (NoServer, OSError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            _server["error"] = str(error)
    if "url" not in _server:
        unavailable(_server["error"])
    return _server["url"]


_databases = itertools.count()


def fresh_database() -> str:
    """A new, empty database on the tests' server; returns its URL."""
    import psycopg

    server = server_url()
    name = f"chatedit_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return _on_database(server, name)


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_on_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _on_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
def postgres_url():
    """A ``postgresql://`` URL to an empty database of this test's own, dropped after it."""
    url = fresh_database()
    yield url
    drop_database(url)


if __name__ == "__main__":  # CI: python tests/postgres.py start|stop DIR
    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(start(where))
    elif command == "stop":
        stop(where)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} start|stop DIR")
