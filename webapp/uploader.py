"""For uploader authors: which pipeline, which bucket, read at the start of each batch.

Imports nothing but the standard library and this package's rules: no Flask, no web stack.

    conn = connect_uploader("/data/sensor_data.db")      # once
    pipeline_type, bucket = active_pipeline(conn, bucket_map(os.environ))   # each batch

The current pipeline is the newest row by id. A row naming a type we do not manage raises
:class:`UnknownPipelineType` (hold the batch); a table of another shape (the same rule as every
other reader: :func:`webapp.core.schema.check_columns`), or a file that is not SQLite, raises
:class:`DatabaseUnusable`; a lock raises :class:`DatabaseBusy`. All are ``PipelineError``s: hold
the batch on any of them. A missing or empty table reads as the default.
"""

import os
import sqlite3
from collections import namedtuple

from webapp.core.database import fetch, file_uri, is_busy, is_missing_table, unusable
from webapp.core.errors import DatabaseBusy, DatabaseUnusable, PipelineError, UnknownPipelineType
from webapp.core.pipelines import DEFAULT_BUCKETS, DEFAULT_PIPELINE, PIPELINE_TYPES
from webapp.core.schema import check_columns, table_columns

ActivePipeline = namedtuple("ActivePipeline", "pipeline_type bucket")

# One statement: the schema's version (the shape is checked again only when it changes) and the
# newest row by id. A missing table fails to prepare ("no such table"): the default.
CURRENT_SQL = (
    "SELECT (SELECT schema_version FROM pragma_schema_version), "
    "(SELECT pipeline_type FROM pipeline_config ORDER BY id DESC LIMIT 1)"
)


class UploaderConnection(sqlite3.Connection):
    """A connection that remembers the schema version whose table shape it last checked."""

    checked_schema = None


def active_pipeline(conn: sqlite3.Connection, buckets=DEFAULT_BUCKETS) -> ActivePipeline:
    """Return ``(pipeline_type, bucket)``: one single-row read on ``conn``, and the shape
    check every reader applies whenever the schema changed.

    Raises :class:`UnknownPipelineType` for a type this tool does not manage,
    :class:`DatabaseUnusable` for a foreign table or file, :class:`DatabaseBusy` if locked.
    """
    try:
        version, pipeline_type = fetch(conn, CURRENT_SQL)[0]
        if getattr(conn, "checked_schema", None) != version:
            check_columns(table_columns(conn), lambda: _path(conn))
            if isinstance(conn, UploaderConnection):
                conn.checked_schema = version
        if pipeline_type is None:  # an empty table, or a NULL type?
            rows = fetch(conn, "SELECT EXISTS (SELECT 1 FROM pipeline_config)")
            pipeline_type = None if rows[0][0] else DEFAULT_PIPELINE
    except sqlite3.Error as error:
        if not is_missing_table(error):
            raise _error(error, conn) from None
        pipeline_type = DEFAULT_PIPELINE
    if pipeline_type not in PIPELINE_TYPES:
        raise UnknownPipelineType(pipeline_type)
    return ActivePipeline(pipeline_type, buckets[pipeline_type])


def connect_uploader(path, timeout: float = 10.0) -> sqlite3.Connection:
    """Open a connection for :func:`active_pipeline`: an existing SQLite file, autocommit reads.

    Reconnect after a backup is restored under the path (a connection keeps the file it opened).
    """
    if not os.path.isfile(path):
        raise DatabaseUnusable(f"database not found: {path}")
    if os.path.getsize(path) == 0:
        raise DatabaseUnusable(f"not an SQLite database (the file is empty): {path}")
    conn = sqlite3.connect(
        file_uri(path, "rw"),
        uri=True,
        timeout=timeout,
        isolation_level=None,
        factory=UploaderConnection,
    )
    try:
        conn.execute("PRAGMA schema_version").fetchall()  # SQLite checks the header here
    except sqlite3.Error as error:
        conn.close()
        raise _error(error, path) from None
    return conn


def _error(error: sqlite3.Error, conn_or_path) -> PipelineError:
    """Return SQLite's ``error`` as ours: busy (a lock is held: retry later) or unusable."""
    path = conn_or_path if isinstance(conn_or_path, str | os.PathLike) else _path(conn_or_path)
    if is_busy(error):
        return DatabaseBusy(f"database is busy (another process holds a lock): {path}")
    return unusable(error, path)


def _path(conn) -> str:
    try:
        return conn.execute("PRAGMA database_list").fetchall()[0][2]
    except sqlite3.Error:
        return "the database"


__all__ = [
    "ActivePipeline",
    "DatabaseBusy",
    "DatabaseUnusable",
    "UnknownPipelineType",
    "active_pipeline",
    "connect_uploader",
]
