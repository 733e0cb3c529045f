"""The pipeline store: every SQL statement and the connection life cycle. Knows nothing of Flask.

The setting lives in the sensor database itself (table ``pipeline_config``), beside tables that a
sensor writer and an uploader use all the time. So:

* every connection runs in WAL mode with ``synchronous=FULL`` and a short busy timeout;
* every write is one ``BEGIN IMMEDIATE`` unit of work, retried *as a whole* by tenacity on SQLite's
  busy/locked codes, with jittered exponential backoff inside a total time budget;
* every read is a single statement run to completion, so no snapshot is held open;
* the current pipeline is the newest row **by id** (several changes can share one second).
"""

import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter, namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConflictError, DatabaseBusy, DatabaseUnusable, InvalidInput
from .pipelines import DEFAULT_BUCKETS, DEFAULT_PIPELINE, PIPELINE_TYPES, validate_type

TABLE = "pipeline_config"

# Exactly the seed tool's schema: the uploader and older scripts read this table too.
SCHEMA = """CREATE TABLE IF NOT EXISTS pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL CHECK(pipeline_type IN ('raw', 'schematized', 'filtered', 'aggregated')),
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_by TEXT,
    metadata TEXT  -- JSON field for additional information
)"""  # noqa: E501 (kept byte-for-byte as the seed tool wrote it)

COLUMNS = ("id", "pipeline_type", "updated_at", "updated_by", "metadata")
SELECT_ROWS = "SELECT id, pipeline_type, updated_at, updated_by, metadata FROM pipeline_config"
CURRENT_TYPE_SQL = "SELECT pipeline_type FROM pipeline_config ORDER BY id DESC LIMIT 1"

SOURCES = ("cli", "web", "api")
MAX_NAME = 200
MAX_REASON = 2000
SQLITE_HEADER = b"SQLite format 3\x00"

# Per-connection busy timeout. Kept short on purpose: SQLite's own busy handler sleeps in fixed
# steps, while tenacity adds jitter so that several waiting writers do not retry in lock-step.
BUSY_TIMEOUT_SECONDS = 0.05

_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}

#: Per-process counters of write contention, read by the metrics endpoint.
STATS = {"write_retries": 0, "busy_failures": 0}
_stats_lock = threading.Lock()
_stat_listeners = []

#: One JSON line per change (who, from, to, reason, source, id), for the platform's log pipeline.
AUDIT_LOG = logging.getLogger("pipeline.audit")

ActivePipeline = namedtuple("ActivePipeline", "pipeline_type bucket")

# Closing *any* descriptor of a file drops every POSIX lock this process holds on it, SQLite's
# included ("How To Corrupt An SQLite Database File", 2.2): another process may then take the
# file for its own and delete the WAL and shared memory under a live connection ("disk I/O
# error"). So Python reads the header only while no connection of this process has the file
# open; while one has, SQLite already vouches for it. Keyed by (device, inode).
_OPEN_FILES: Counter = Counter()
_OPEN_FILES_LOCK = threading.RLock()


def _file_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _read_header(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER))


@dataclass(frozen=True)
class Change:
    """One row of ``pipeline_config`` (or the never-set default when ``id`` is None)."""

    id: int | None
    pipeline_type: str
    bucket: str
    updated_at: datetime | None
    updated_by: str | None
    metadata: dict = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        return self.id is None

    @property
    def version(self) -> int:
        """The id a compare-and-set must name to replace this change (0 when never set)."""
        return self.id or 0

    @property
    def reason(self) -> str | None:
        return self.metadata.get("reason")

    @property
    def source(self) -> str | None:
        return self.metadata.get("source")

    @property
    def previous(self) -> str | None:
        return self.metadata.get("previous")

    def to_dict(self) -> dict:
        """Return the JSON record shared by the CLI and the API."""
        return {
            "id": self.id,
            "pipeline_type": self.pipeline_type,
            "bucket": self.bucket,
            "updated_at": iso_utc(self.updated_at),
            "updated_by": self.updated_by,
            "metadata": self.metadata,
            "default": self.is_default,
        }


@dataclass(frozen=True)
class SetResult:
    """What a set did: the change now current, and whether a row was written."""

    change: Change
    changed: bool

    def to_dict(self) -> dict:
        return {**self.change.to_dict(), "changed": self.changed}


def iso_utc(moment: datetime | None) -> str | None:
    """Format ``moment`` as ISO 8601 in UTC with a ``Z`` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(value) -> datetime | None:
    """Read an ``updated_at`` value (SQLite's ``CURRENT_TIMESTAMP`` is UTC without a zone)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sql_timestamp(moment: datetime) -> str:
    """Format ``moment`` the way ``CURRENT_TIMESTAMP`` stores it, for range filters."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def parse_metadata(text) -> dict:
    """Return the metadata JSON object; rows written by other tools may hold anything."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"text": str(text)}
    return value if isinstance(value, dict) else {"value": value}


def _is_busy(error: BaseException) -> bool:
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # errors raised by the sqlite3 module itself carry no code
        return "locked" in str(error) or "busy" in str(error)
    return code & 0xFF in _BUSY_CODES


def _is_missing_table(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)


def on_stat(listener) -> None:
    """Call ``listener(name)`` each time a ``STATS`` counter grows (metrics sum them per worker)."""
    if listener not in _stat_listeners:
        _stat_listeners.append(listener)


def _bump(name) -> None:
    with _stats_lock:
        STATS[name] += 1
    for listener in _stat_listeners:
        listener(name)


def _count_retry(retry_state) -> None:
    _bump("write_retries")


def active_pipeline(conn: sqlite3.Connection, buckets=DEFAULT_BUCKETS) -> ActivePipeline:
    """Return ``(pipeline_type, bucket)`` for the uploader: one indexed single-row read.

    ``conn`` is the uploader's own connection (see :func:`connect_uploader`). An empty or
    missing table reads as the default pipeline.
    """
    try:
        rows = conn.execute(CURRENT_TYPE_SQL).fetchall()
    except sqlite3.OperationalError as error:
        if not _is_missing_table(error):
            raise
        rows = None
    pipeline_type = rows[0][0] if rows else DEFAULT_PIPELINE
    return ActivePipeline(pipeline_type, buckets[pipeline_type])


def connect_uploader(path, timeout: float = 10.0) -> sqlite3.Connection:
    """Open a connection for :func:`active_pipeline`: existing file only, autocommit reads."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseUnusable(f"database not found: {path}")
    return sqlite3.connect(
        path.resolve().as_uri() + "?mode=rw", uri=True, timeout=timeout, isolation_level=None
    )


class PipelineStore:
    """Read and change the pipeline setting in one SQLite file.

    ``create=False`` (any path an operator named) refuses a missing file; ``create=True`` is for
    the embedded default database only. The connection is opened on first use, never at import.
    """

    def __init__(self, path, *, create=False, write_timeout=10.0, buckets=None):
        self.path = Path(os.fspath(path))
        self.create = create
        self.write_timeout = float(write_timeout)
        self.buckets = dict(buckets or DEFAULT_BUCKETS)
        self._conn = None

    # -- connection life cycle -------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._guard(self._open)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            with _OPEN_FILES_LOCK:
                _OPEN_FILES[self._file_key] -= 1
                if _OPEN_FILES[self._file_key] <= 0:
                    del _OPEN_FILES[self._file_key]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _check_file(self) -> None:
        """Refuse, before SQLite touches it, a path that is not a usable SQLite file."""
        path = self.path
        if path.is_dir():
            raise DatabaseUnusable(f"database path is a directory: {path}")
        if not path.exists():
            if not self.create:
                raise DatabaseUnusable(f"database not found: {path}")
            if not path.parent.is_dir():
                raise DatabaseUnusable(f"database folder not found: {path.parent}")
            if not os.access(path.parent, os.W_OK):
                raise DatabaseUnusable(f"database folder is not writable: {path.parent}")
            return
        try:
            header = b"" if _file_key(path) in _OPEN_FILES else _read_header(path)
        except OSError as error:
            raise DatabaseUnusable(f"database is not readable: {path} ({error.strerror})") from None
        if header and header != SQLITE_HEADER:
            raise DatabaseUnusable(f"not an SQLite database: {path}")
        if not os.access(path, os.W_OK):
            raise DatabaseUnusable(f"database is not writable: {path}")
        if not os.access(path.parent, os.W_OK):
            # WAL keeps -wal and -shm files beside the database.
            raise DatabaseUnusable(f"database folder is not writable (WAL needs it): {path.parent}")

    def _open(self) -> sqlite3.Connection:
        # Held while checking and opening, so no thread reads the header with Python while
        # another thread of this process is opening its connection (see _OPEN_FILES).
        with _OPEN_FILES_LOCK:
            conn = self._connect()
            self._file_key = _file_key(self.path)
            _OPEN_FILES[self._file_key] += 1
        return conn

    def _connect(self) -> sqlite3.Connection:
        self._check_file()
        mode = "rwc" if self.create else "rw"
        conn = sqlite3.connect(
            self.path.resolve().as_uri() + f"?mode={mode}",
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
        )
        try:
            # Before WAL (a foreign database must not be altered); retried like the rest, as a
            # file still in rollback-journal mode refuses readers while another process commits.
            self._retry(lambda: self._check_schema(conn))
            self._retry(lambda: self._use_wal(conn))
            conn.execute("PRAGMA synchronous=FULL")  # a reported change survives power loss
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn) -> None:
        columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})").fetchall())
        if columns and columns != COLUMNS:
            raise DatabaseUnusable(
                f"table {TABLE} in {self.path} has another shape ({', '.join(columns)}); "
                f"expected ({', '.join(COLUMNS)}); refusing to touch it"
            )

    @staticmethod
    def _use_wal(conn) -> None:
        # journal_mode cannot change inside a transaction (sqlite-utils refuses too).
        mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
        if mode.lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
        if mode.lower() != "wal":
            raise DatabaseUnusable(f"could not switch the database to WAL (mode is {mode})")

    # -- retries and error mapping ---------------------------------------------------------

    def _retry(self, attempt):
        """Run ``attempt``; on busy/locked, run it again with jittered backoff within the budget."""
        started = time.monotonic()
        try:
            return attempt()
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or self.write_timeout <= 0:
                raise
        _count_retry(None)
        # tenacity is imported only under contention: most commands never need it, and
        # `flask pipeline get` must start fast.
        import tenacity

        remaining = max(0.0, self.write_timeout - (time.monotonic() - started))
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_busy),
            wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.25),
            # Give up only once the budget has passed, so "held the lock for more than N s" is
            # true; the overshoot is at most one backoff (0.25 s) plus the busy timeout.
            stop=tenacity.stop_after_delay(remaining),
            before_sleep=_count_retry,
            reraise=True,
        )
        return retrying(attempt)

    def _guard(self, operation):
        """Run ``operation``, turning SQLite errors into our own one-line errors."""
        try:
            return operation()
        except sqlite3.Error as error:
            if _is_busy(error):
                _bump("busy_failures")
                raise DatabaseBusy(
                    f"database is busy: another process held the write lock for more than "
                    f"{self.write_timeout:g} s; nothing was written ({self.path})"
                ) from None
            raise DatabaseUnusable(f"database error in {self.path}: {error}") from None

    def _read(self, sql, params=()) -> list:
        """Run one SELECT to completion (no snapshot left open); a missing table reads empty."""

        def attempt():
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as error:
                if _is_missing_table(error):
                    return []
                raise

        return self._guard(lambda: self._retry(attempt))

    def _write(self, work):
        """Run ``work(conn)`` as one BEGIN IMMEDIATE transaction, retried as a whole."""

        def attempt():
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._guard(lambda: self._retry(attempt))

    # -- reads -----------------------------------------------------------------------------

    def _change(self, row) -> Change:
        pipeline_type = row[1]
        return Change(
            id=row[0],
            pipeline_type=pipeline_type,
            bucket=self.buckets.get(pipeline_type, ""),
            updated_at=parse_timestamp(row[2]),
            updated_by=row[3],
            metadata=parse_metadata(row[4]),
        )

    def default_change(self) -> Change:
        return Change(None, DEFAULT_PIPELINE, self.buckets[DEFAULT_PIPELINE], None, None, {})

    def current(self) -> Change:
        """Return the newest change by id, or the never-set default. Writes nothing."""
        rows = self._read(f"{SELECT_ROWS} ORDER BY id DESC LIMIT 1")
        return self._change(rows[0]) if rows else self.default_change()

    def active(self) -> ActivePipeline:
        """Return ``(pipeline_type, bucket)`` on this store's own connection."""
        return self._guard(lambda: self._retry(lambda: active_pipeline(self.conn, self.buckets)))

    def get(self, change_id: int) -> Change | None:
        """Return change ``change_id``, or None."""
        rows = self._read(f"{SELECT_ROWS} WHERE id = ?", (int(change_id),))
        return self._change(rows[0]) if rows else None

    @staticmethod
    def _filters(pipeline_type=None, updated_by=None, since=None, until=None, before=None):
        clauses, params = [], []
        if pipeline_type:
            clauses.append("pipeline_type = ?")
            params.append(validate_type(pipeline_type))
        if updated_by:
            clauses.append("updated_by = ?")
            params.append(updated_by)
        if since is not None:
            clauses.append("datetime(updated_at) >= datetime(?)")
            params.append(sql_timestamp(since))
        if until is not None:
            clauses.append("datetime(updated_at) < datetime(?)")
            params.append(sql_timestamp(until))
        if before is not None:
            clauses.append("id < ?")
            params.append(int(before))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return where, params

    def history(self, limit=20, offset=0, **filters) -> list[Change]:
        """Return changes newest first (``limit=None``: all of them); filters: pipeline_type,
        updated_by, since, until, before."""
        if limit is not None and int(limit) < 1:
            raise InvalidInput(f"limit must be at least 1 (got {limit})")
        where, params = self._filters(**filters)
        rows = self._read(
            f"{SELECT_ROWS}{where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, -1 if limit is None else int(limit), int(offset)),  # -1: no limit
        )
        return [self._change(row) for row in rows]

    def count(self, **filters) -> int:
        """Return how many changes match the same filters as :meth:`history`."""
        where, params = self._filters(**filters)
        rows = self._read(f"SELECT count(*) FROM pipeline_config{where}", params)
        return rows[0][0] if rows else 0

    def changes_after(self, after_id: int) -> list[Change]:
        """Return changes with an id above ``after_id``, oldest first (for monitor and polling)."""
        rows = self._read(f"{SELECT_ROWS} WHERE id > ? ORDER BY id", (int(after_id),))
        return [self._change(row) for row in rows]

    def active_at(self, moment: datetime) -> Change:
        """Return the change in force at ``moment`` (the default if none was made before it)."""
        rows = self._read(
            f"{SELECT_ROWS} WHERE datetime(updated_at) <= datetime(?) ORDER BY id DESC LIMIT 1",
            (sql_timestamp(moment),),
        )
        return self._change(rows[0]) if rows else self.default_change()

    def users(self) -> list[str]:
        """Return every distinct ``updated_by``, for filters."""
        rows = self._read(
            "SELECT DISTINCT updated_by FROM pipeline_config WHERE updated_by IS NOT NULL "
            "ORDER BY updated_by"
        )
        return [row[0] for row in rows]

    def data_version(self) -> int:
        """Return ``PRAGMA data_version``: it changes when another connection commits."""
        return self._guard(lambda: self.conn.execute("PRAGMA data_version").fetchall()[0][0])

    def status(self) -> dict:
        """Return what readiness checks need: journal mode and whether our table exists."""

        def probe():
            conn = self.conn
            mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchall()[0][0]
            return {"journal_mode": mode, "table_exists": bool(tables)}

        return self._guard(lambda: self._retry(probe))

    # -- writes ----------------------------------------------------------------------------

    def _current_in(self, conn) -> Change:
        rows = conn.execute(f"{SELECT_ROWS} ORDER BY id DESC LIMIT 1").fetchall()
        return self._change(rows[0]) if rows else self.default_change()

    def set(
        self,
        pipeline_type,
        *,
        updated_by,
        reason=None,
        source="cli",
        expect_id=None,
        reverts_to=None,
    ) -> SetResult:
        """Make ``pipeline_type`` current, once; a no-op when it already is.

        With ``expect_id``, refuse (:class:`ConflictError`) unless the newest change still has
        that id (0 = never set). Metadata records reason, previous type and source.
        """
        pipeline_type = validate_type(pipeline_type)
        updated_by = _clean_text(updated_by, "operator name", MAX_NAME, required=True)
        reason = _clean_text(reason, "reason", MAX_REASON)
        if source not in SOURCES:
            raise InvalidInput(f"invalid source {source!r}: choose one of {', '.join(SOURCES)}")
        if expect_id is not None and (not isinstance(expect_id, int) or expect_id < 0):
            raise InvalidInput(f"expected id must be a whole number ≥ 0 (got {expect_id!r})")

        def work(conn):
            conn.execute(SCHEMA)
            current = self._current_in(conn)
            if expect_id is not None and current.version != expect_id:
                raise ConflictError(describe_conflict(expect_id, current), current)
            if current.pipeline_type == pipeline_type and not current.is_default:
                return SetResult(current, changed=False)
            metadata = {
                "reason": reason,
                "previous": None if current.is_default else current.pipeline_type,
                "previous_id": current.id,
                "source": source,
            }
            if reverts_to is not None:
                metadata["reverts_to"] = reverts_to
            cursor = conn.execute(
                "INSERT INTO pipeline_config (pipeline_type, updated_by, metadata)"
                " VALUES (?, ?, ?)",
                (pipeline_type, updated_by, json.dumps(metadata)),
            )
            row = conn.execute(f"{SELECT_ROWS} WHERE id = ?", (cursor.lastrowid,)).fetchall()[0]
            return SetResult(self._change(row), changed=True)

        result = self._write(work)
        if result.changed:
            log_change(result.change)
        return result

    def revert(self, to_id, *, updated_by, reason=None, source="web", expect_id=None) -> SetResult:
        """Make the type of change ``to_id`` current again, as a new change that names it."""
        target = self.get(to_id)
        if target is None:
            raise InvalidInput(f"no change #{to_id} to revert to")
        reason = reason or f"revert to change #{target.id}"
        return self.set(
            target.pipeline_type,
            updated_by=updated_by,
            reason=reason,
            source=source,
            expect_id=expect_id,
            reverts_to=target.id,
        )

    def initialize(self) -> None:
        """Create the ``pipeline_config`` table if it is missing (nothing else is touched)."""
        self._write(lambda conn: conn.execute(SCHEMA))


def describe_conflict(expect_id: int, current: Change) -> str:
    """Explain a compare-and-set refusal: what is current now, who set it and when."""
    if current.is_default:
        return f"pipeline changed since version {expect_id}: nothing has been set yet"
    when = iso_utc(current.updated_at) or "an unknown time"
    who = current.updated_by or "an unknown operator"
    return (
        f"pipeline changed since version {expect_id}: it is now {current.pipeline_type} "
        f"(change #{current.id}, set by {who} at {when}); nothing was written"
    )


def log_change(change: Change) -> None:
    """Log ``change`` as one JSON line on ``pipeline.audit`` (after its commit: it happened)."""
    if not AUDIT_LOG.isEnabledFor(logging.INFO):
        return
    record = {
        "event": "pipeline_change",
        "id": change.id,
        "who": change.updated_by,
        "from": change.previous,
        "to": change.pipeline_type,
        "bucket": change.bucket,
        "reason": change.reason,
        "source": change.source,
        "at": iso_utc(change.updated_at),
    }
    if "reverts_to" in change.metadata:
        record["reverts_to"] = change.metadata["reverts_to"]
    AUDIT_LOG.info(json.dumps(record, ensure_ascii=False))


def _clean_text(value, what, max_length, required=False):
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    value = (value or "").strip()
    if required and not value:
        raise InvalidInput(f"{what} is required")
    if len(value) > max_length:
        raise InvalidInput(f"{what} is too long ({len(value)} characters, at most {max_length})")
    if any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise InvalidInput(f"{what} contains control characters")
    return value or None


__all__ = [
    "PIPELINE_TYPES",
    "ActivePipeline",
    "Change",
    "PipelineStore",
    "SetResult",
    "active_pipeline",
    "connect_uploader",
]
