"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temporary directory on a
free loopback port, run as the ``postgres`` user (initdb refuses root), stopped at the end.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it when missing).
Under ``CI=true`` a missing server is an error, never a skip: the fleet suite must run on both.
"""

import glob
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest
from live import free_port

from webapp.fleet.engine import database_url
from webapp.fleet.migrate import upgrade
from webapp.fleet.store import FleetStore

USER = "postgres"


def binaries() -> str | None:
    """Return the newest /usr/lib/postgresql/*/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: p.split("/")[4])
    return os.path.dirname(found[-1]) if found else None


def as_postgres() -> list[str]:
    """The command prefix that runs a program as the postgres user (we may be root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", USER, "--"]
    return []


class PostgresServer:
    """One throwaway cluster; ``database(name)`` creates a fresh database and returns its URL."""

    def __init__(self):
        self.bin = binaries()
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="fleet-pg-")
        self.data = os.path.join(self.root, "data")
        self.count = 0

    def run(self, program, *args, **kwargs):
        return subprocess.run(
            [*as_postgres(), os.path.join(self.bin, program), *args],
            check=True,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def start(self) -> "PostgresServer":
        if not stat.S_ISCHR(os.stat(os.devnull).st_mode):
            # initdb's shell writes to it as the postgres user: say so instead of its error.
            raise RuntimeError(f"{os.devnull} is not a device (something replaced it)")
        if os.geteuid() == 0:
            user = pwd.getpwnam(USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o755)
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = os.path.join(self.root, "server.log")
        self.run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start")
        return self

    def url(self, database="postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database="postgres") -> str:
        return self.run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            USER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ).stdout

    def database(self, template: str | None = None) -> str:
        """Create a fresh database (empty, or a copy of ``template``); return its URL."""
        self.count += 1
        name = f"fleet_{self.count}"
        self.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole run (initdb + pg_ctl in a temporary directory)."""
    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb is missing: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)")
    server = PostgresServer().start()
    # One migrated database copied for each test (CREATE DATABASE ... TEMPLATE): migrating
    # every test's database would cost seconds each. Tests of migrations take empty ones.
    template = server.database()
    store = FleetStore(database_url(template), pool_size=1)
    upgrade(store.engine)
    store.close()
    server.template = template.rsplit("/", 1)[1]
    yield server
    server.stop()


def store_setting(backend, request, tmp_path, migrated):
    if backend == "sqlite":
        yield str(tmp_path / "fleet.db")
        return
    server = request.getfixturevalue("postgres")
    url = server.database(server.template if migrated else None)
    yield url
    server.drop(url)
