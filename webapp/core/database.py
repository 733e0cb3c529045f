"""One SQLite file, as the store uses it: open and prepare a connection, notice when the file
under the path is not the one opened, run reads and ``BEGIN IMMEDIATE`` units of work retried on
busy, and turn SQLite's errors into our one-line errors. No Flask, no pipeline rules.

One :class:`Database` per process and thread (SQLite connections are not shared across threads).
Every use first compares the path's ``stat`` with the file the connection opened: a backup
renamed or copied into place, a truncated or vanished file is noticed on the next use (a stat
costs about a microsecond), and the connection is reopened or the problem reported.
"""

import os
import sqlite3
import time

from webapp.core import events
from webapp.core.errors import DatabaseBusy, DatabaseUnusable, ForeignTable

# Per-connection busy timeout. Kept short on purpose: SQLite's own busy handler sleeps in fixed
# steps, while tenacity adds jitter so that several waiting writers do not retry in lock-step.
BUSY_TIMEOUT_SECONDS = 0.05

_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_MESSAGES = {
    sqlite3.SQLITE_NOTADB: "not an SQLite database",
    sqlite3.SQLITE_CORRUPT: "database file is damaged (SQLite: malformed)",
    sqlite3.SQLITE_FULL: "disk full; nothing was written",
    sqlite3.SQLITE_READONLY: "database is read-only here; nothing was written",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database",
    sqlite3.SQLITE_IOERR: "disk I/O error on the database",
    sqlite3.SQLITE_PERM: "permission denied on the database",
}


def is_busy(error: BaseException) -> bool:
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # errors raised by the sqlite3 module itself carry no code
        return "locked" in str(error) or "busy" in str(error)
    return code & 0xFF in _BUSY_CODES


def is_missing_table(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)


def unusable(error: sqlite3.Error, path) -> DatabaseUnusable:
    """Return SQLite's ``error`` as our one-line error naming ``path``."""
    code = getattr(error, "sqlite_errorcode", None)
    message = _MESSAGES.get(code & 0xFF if code is not None else None)
    if message:
        return DatabaseUnusable(f"{message}: {path}")
    if "no such column" in str(error):
        return ForeignTable(
            f"pipeline_config in {path} is not the table this tool manages ({error}); "
            "nothing was read or written (README: Troubleshooting)"
        )
    return DatabaseUnusable(f"database error in {path}: {error}")


def file_uri(path, mode: str) -> str:
    """Return SQLite's ``file:`` URI for ``path`` (``%``, ``?`` and ``#`` escaped) and ``mode``.

    A URI, because only a URI can say ``mode=rw``: never create a file the operator named.
    """
    absolute = os.path.abspath(path)
    for char, escaped in (("%", "%25"), ("?", "%3f"), ("#", "%23")):
        absolute = absolute.replace(char, escaped)
    return f"file:{absolute}?mode={mode}"


def _tolerant_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def fetch(conn: sqlite3.Connection, sql: str, params=()) -> list:
    """Run one statement to completion; text that is not UTF-8 reads with U+FFFD in its place.

    Rows written by other tools may hold any bytes. The C decoder is kept for the common case;
    only a statement that meets such bytes runs again with the tolerant one.
    """
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if "Could not decode to UTF-8" not in str(error):
            raise
    conn.text_factory = _tolerant_text
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = str


class Database:
    """A lazily opened, self-checking connection to one SQLite file.

    ``create=False`` (any path an operator named) refuses a missing or empty file; ``create=True``
    is for the embedded demo database only. ``prepare(conn)`` runs on each new connection.
    """

    def __init__(self, path, *, create=False, write_timeout=10.0, prepare=None, write_gate=None):
        self.path = os.fspath(path)
        self.create = create
        self.write_timeout = float(write_timeout)
        self.prepare = prepare
        self.write_gate = write_gate
        self.generation = 0  # bumped at every (re)open: a replaced file reads as a new one
        self._conn = None
        self._stamp = None
        self._wal = False

    # -- connection life cycle -------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """Return the open connection, reopened first if the file at the path changed."""
        if self._conn is not None and self._same_file():
            return self._conn
        self.close()
        self._conn = self._open()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @staticmethod
    def _file_stamp(stat) -> tuple:
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _same_file(self) -> bool:
        # A rename (new inode), a copy over it (new mtime or size), truncation or removal all
        # change the stamp. So does a checkpoint of the WAL, which costs one harmless reopen.
        try:
            return self._file_stamp(os.stat(self.path)) == self._stamp
        except OSError:
            return False

    def _check_file(self) -> None:
        """Refuse, before SQLite touches it, a path that cannot be a usable database."""
        path, folder = self.path, os.path.dirname(os.path.abspath(self.path))
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            if not self.create:
                raise DatabaseUnusable(f"database not found: {path}") from None
            if not os.path.isdir(folder):
                raise DatabaseUnusable(f"database folder not found: {folder}") from None
            if not os.access(folder, os.W_OK):
                raise DatabaseUnusable(f"database folder is not writable: {folder}") from None
            return
        except OSError as error:
            raise DatabaseUnusable(f"cannot reach the database {path} ({error.strerror})") from None
        if os.path.isdir(path):
            raise DatabaseUnusable(f"database path is a directory: {path}")
        if stat.st_size == 0 and not self.create:
            # SQLite would take an empty file for a new database: a truncated file must not be.
            raise DatabaseUnusable(f"not an SQLite database (the file is empty): {path}")
        if not os.access(path, os.R_OK):
            raise DatabaseUnusable(f"database is not readable: {path}")
        if not os.access(path, os.W_OK):
            raise DatabaseUnusable(f"database is not writable: {path}")
        if not os.access(folder, os.W_OK):
            # WAL keeps -wal and -shm files beside the database.
            raise DatabaseUnusable(f"database folder is not writable (WAL needs it): {folder}")

    def _open(self) -> sqlite3.Connection:
        self._check_file()
        mode = "rwc" if self.create else "rw"
        conn = sqlite3.connect(
            file_uri(self.path, mode),
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        try:
            self._stamp = self._file_stamp(os.stat(self.path))
            # A file still in rollback-journal mode refuses readers while another process
            # commits: the first statements are retried like any other.
            self.guard(lambda: self.retry(lambda: self._prepare(conn)))
        except BaseException:
            conn.close()
            raise
        self.generation += 1
        self._wal = False
        return conn

    def _prepare(self, conn) -> None:
        conn.execute("PRAGMA synchronous=FULL")  # a reported change survives power loss
        if self.prepare is not None:
            self.prepare(conn)

    def _use_wal(self, conn) -> None:
        """Switch to WAL before the first write (only a write may change the file's mode).

        journal_mode cannot change inside a transaction (sqlite-utils refuses too).
        """
        if self._wal:
            return
        mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
        if mode.lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
        if mode.lower() != "wal":
            raise DatabaseUnusable(f"could not switch the database to WAL (mode is {mode})")
        self._wal = True

    # -- retries and error mapping ---------------------------------------------------------

    def retry(self, attempt):
        """Run ``attempt``; on busy/locked, run it again with jittered backoff within the budget."""
        started = time.monotonic()
        try:
            return attempt()
        except sqlite3.OperationalError as error:
            if not is_busy(error) or self.write_timeout <= 0:
                raise
        events.bump("write_retries")
        # tenacity is imported only under contention: most commands never need it.
        import tenacity

        remaining = max(0.0, self.write_timeout - (time.monotonic() - started))
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_busy),
            wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.25),
            # Give up only once the budget has passed, so "held the lock for more than N s" is
            # true; the overshoot is at most one backoff (0.25 s) plus the busy timeout.
            stop=tenacity.stop_after_delay(remaining),
            before_sleep=lambda state: events.bump("write_retries"),
            reraise=True,
        )
        return retrying(attempt)

    def guard(self, operation):
        """Run ``operation``, turning SQLite errors into our own one-line errors."""
        try:
            return operation()
        except sqlite3.Error as error:
            if is_busy(error):
                events.bump("busy_failures")
                raise DatabaseBusy(
                    f"database is busy: another process held the write lock for more than "
                    f"{self.write_timeout:g} s; nothing was written, and retrying is safe "
                    f"({self.path})"
                ) from None
            raise unusable(error, self.path) from None

    # -- statements ------------------------------------------------------------------------

    def read(self, sql, params=()) -> list:
        """Run one SELECT to completion (no snapshot left open); a missing table reads empty."""
        if self.create and not self.exists():
            return []  # the embedded demo database is created by its first write, not a read

        def attempt():
            try:
                return fetch(self.connection(), sql, params)
            except sqlite3.OperationalError as error:
                if is_missing_table(error):
                    return []
                raise

        return self.guard(lambda: self.retry(attempt))

    def write(self, work):
        """Run ``work(conn)`` as one BEGIN IMMEDIATE transaction, retried as a whole."""
        gate = self.write_gate
        if gate is not None and not gate.acquire(blocking=False):
            raise DatabaseBusy(
                "too many changes are already waiting for the database lock here; nothing was "
                "written, and retrying is safe"
            )

        def attempt():
            conn = self.connection()
            self._use_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return self.guard(lambda: self.retry(attempt))
        finally:
            if gate is not None:
                gate.release()

    def pragma(self, name: str):
        """Return the value of ``PRAGMA name`` (no retry: pragmas that read state never wait)."""
        return self.guard(lambda: self.connection().execute(f"PRAGMA {name}").fetchall()[0][0])
