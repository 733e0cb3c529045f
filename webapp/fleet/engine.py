"""Connections to the centre's store: SQLite (a path) or PostgreSQL (a ``postgresql://`` URL).

SQLite: WAL (readers never wait for the writer), a busy timeout, and every write transaction is
``BEGIN IMMEDIATE``, so two writers queue for the lock instead of failing at commit. PostgreSQL:
READ COMMITTED with row locks (``FOR UPDATE``) and ``ON CONFLICT`` upserts, so several centre
hosts can share one database. Either way a whole unit of work is retried, with jittered backoff
inside a time budget, when the database reports a lock, deadlock or serialization failure.
Engines are made per process (after gunicorn's fork), never at import time.
"""

import contextlib
import fcntl
import os
import threading

from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from webapp.core.config import ROOT
from webapp.core.errors import PipelineError

EMBEDDED_FLEET_DB = os.path.join(ROOT, "instance", "fleet.db")
BUSY_TIMEOUT_MS = 2000
WRITE_BUDGET_S = 10.0
# SQLite's busy and locked codes; PostgreSQL's serialization failure, deadlock and lock timeout,
# and a unique violation: two hosts inserting one new node's first report at once (the retry
# finds the row the other committed, and locks it).
SQLITE_RETRY_CODES = {5, 6, 261, 517}
PG_RETRY_STATES = {"40001", "40P01", "55P03", "23505"}


NO_LOCK = contextlib.nullcontext()  # PostgreSQL: row locks, no store-wide lock


class StoreUnavailable(PipelineError):
    """The store cannot be reached or stayed busy past the budget (HTTP 503)."""

    http_status = 503


def database_url(setting: str | None) -> str:
    """Return the SQLAlchemy URL for ``PIPELINE_FLEET_DB`` (a path, or a PostgreSQL URL)."""
    value = (setting or "").strip() or EMBEDDED_FLEET_DB
    if value.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if value.startswith("postgresql+psycopg://"):
        return value
    if "://" in value:
        raise PipelineError(
            "PIPELINE_FLEET_DB must be a SQLite path or a postgresql:// URL "
            f"(got a {value.split('://', 1)[0]}:// URL)"
        )
    return "sqlite:///" + os.path.abspath(value)


def describe(url: str) -> str:
    """Name the store for messages without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, pool_size: int = 8):
    """Return an engine for ``url`` with this module's connection rules."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", prepare_sqlite)
        event.listen(engine, "begin", begin_sqlite)
        engine.write_lock = WriteLock(path + "-writelock")
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # a restarted PostgreSQL leaves dead connections in the pool
        connect_args={"connect_timeout": 5},
    )


class WriteLock:
    """Queue this store's SQLite writers in the kernel (flock), not in SQLite's busy handler.

    SQLite's busy handler polls with sleeps of up to 100 ms, so under a steady stream of
    writes from two workers a waiting writer can sleep long after the lock is free: p99
    latency in hundreds of ms. A blocking flock wakes the next writer the moment the lock is
    released. A thread lock comes first (flock does not exclude threads sharing one file);
    writers that do not take it (another tool, a migration) still meet BEGIN IMMEDIATE and
    the busy timeout.
    """

    def __init__(self, path: str):
        self.path = path
        self.threads = threading.Lock()
        self.fd = None

    def __enter__(self):
        self.threads.acquire()
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            self.threads.release()
            raise
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.threads.release()


def prepare_sqlite(dbapi_connection, _record) -> None:
    """Set WAL and the busy timeout; let ``begin_sqlite`` start transactions itself."""
    dbapi_connection.isolation_level = None  # pysqlite must not BEGIN behind our back
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
    cursor.execute("PRAGMA foreign_keys = ON")
    # 32 MiB of pages per connection (SQLite's default is 2 MiB): a keyset page of a 100 000-node
    # table touches rows all over the file, and each page SQLite re-reads costs a system call.
    cursor.execute("PRAGMA cache_size = -32768")
    cursor.close()


def begin_sqlite(connection) -> None:
    """Begin IMMEDIATE for writes (``write=True``), a plain deferred BEGIN for reads."""
    mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


def is_transient(error: BaseException) -> bool:
    """Return True for lock, busy, deadlock and serialization failures worth retrying."""
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None:
        return code in SQLITE_RETRY_CODES
    return getattr(original, "sqlstate", None) in PG_RETRY_STATES


def run_write(engine, work, budget: float = WRITE_BUDGET_S):
    """Run ``work(connection)`` in one write transaction, retried as a whole while transient."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.005, max=0.25),
        stop=stop_after_delay(budget),
        reraise=False,
    )
    try:
        for attempt in retrying:
            with (
                attempt,
                getattr(engine, "write_lock", NO_LOCK),
                engine.connect().execution_options(write=True) as connection,
                connection.begin(),
            ):
                return work(connection)
    except RetryError as error:
        raise StoreUnavailable(f"the fleet store stayed busy for {budget:g} s") from error
    except DBAPIError as error:
        raise unavailable(error) from error
    return None  # unreachable: Retrying either returns or raises


def run_read(engine, work):
    """Run ``work(connection)`` on a read connection; store errors become StoreUnavailable."""
    try:
        with engine.connect() as connection:
            return work(connection)
    except DBAPIError as error:
        raise unavailable(error) from error


def unavailable(error: DBAPIError) -> StoreUnavailable:
    """Return the one-line 503 for a database error (its first line, never the SQL)."""
    first = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else "error"
    return StoreUnavailable(f"the fleet store is unavailable: {first}")


def upsert(connection, table, values: dict, keys: tuple, add: dict):
    """Insert ``values``, or add ``add``'s amounts to the row with the same ``keys``."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + amount for name, amount in add.items()},
    )
    connection.execute(statement)


def insert_ignore(connection, table, rows: list[dict]) -> None:
    """Insert ``rows``, skipping those whose primary key is already stored."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    connection.execute(insert(table).on_conflict_do_nothing(), rows)


def fleet_db_setting(config) -> str | None:
    """Return ``PIPELINE_FLEET_DB``, else the content of ``PIPELINE_FLEET_DB_FILE`` (a secret
    file: a PostgreSQL URL holds its password), else None (the embedded SQLite store)."""
    if config.get("FLEET_DB"):
        return config["FLEET_DB"]
    if config.get("FLEET_DB_FILE"):
        from webapp.core.config import read_secret_file

        return read_secret_file(config["FLEET_DB_FILE"], "PIPELINE_FLEET_DB_FILE")
    return None
