"""For uploader authors: which pipeline, which bucket, read at the start of each batch.

Imports nothing but the standard library and this package's rules: no Flask, no web stack.

    conn = connect_uploader("/data/sensor_data.db")      # once
    pipeline_type, bucket = active_pipeline(conn, bucket_map(os.environ))   # each batch

The current pipeline is the newest row by id. A row naming a type we do not manage raises
:class:`UnknownPipelineType` (hold the batch); a table of another tool's shape, or a file that is
not SQLite, raises :class:`DatabaseUnusable`. A missing or empty table reads as the default.
"""

import os
import sqlite3
from collections import namedtuple

from webapp.core.database import fetch, file_uri, is_busy, is_missing_table, unusable
from webapp.core.errors import DatabaseBusy, DatabaseUnusable, UnknownPipelineType
from webapp.core.pipelines import DEFAULT_BUCKETS, DEFAULT_PIPELINE, PIPELINE_TYPES

ActivePipeline = namedtuple("ActivePipeline", "pipeline_type bucket")

# Naming updated_at makes a table of another shape (no such column) fail instead of being read.
CURRENT_SQL = (
    "SELECT pipeline_type, updated_at IS NULL FROM pipeline_config ORDER BY id DESC LIMIT 1"
)


def active_pipeline(conn: sqlite3.Connection, buckets=DEFAULT_BUCKETS) -> ActivePipeline:
    """Return ``(pipeline_type, bucket)``: one indexed single-row read on ``conn``.

    Raises :class:`UnknownPipelineType` for a type this tool does not manage,
    :class:`DatabaseUnusable` for a foreign table or file, :class:`DatabaseBusy` if locked.
    """
    try:
        rows = fetch(conn, CURRENT_SQL)
    except sqlite3.Error as error:
        if is_missing_table(error):
            rows = None
        elif is_busy(error):
            raise DatabaseBusy(f"database is busy: {error}") from None
        else:
            raise unusable(error, _path(conn)) from None
    pipeline_type = rows[0][0] if rows else DEFAULT_PIPELINE
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
    conn = sqlite3.connect(file_uri(path, "rw"), uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA schema_version").fetchall()  # SQLite checks the header here
    except sqlite3.Error as error:
        conn.close()
        raise unusable(error, path) from None
    return conn


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
