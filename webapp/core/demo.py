"""The embedded demo database (``instance/pipeline.db``): made once, like a sensor node's file.

It is the only database this tool ever creates, and only when no database is named (neither
``--db`` nor ``PIPELINE_DB``): a named path that does not exist is refused, never created. The
demo file holds what a node's does: a ``sensor_readings`` table with a few readings, and our
``pipeline_config`` table, empty (the uploader reads the default, ``raw``), in WAL mode.
"""

import contextlib
import os
import sqlite3

from webapp.core import schema

READINGS_TABLE = (
    "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "sensor_id TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL)"
)
READINGS = (
    ("temp-01", 21.4, "2026-11-25 08:00:00"),
    ("temp-01", 21.9, "2026-11-25 08:01:00"),
    ("humidity-01", 48.0, "2026-11-25 08:00:00"),
    ("pressure-01", 1013.2, "2026-11-25 08:00:00"),
)


def ensure(path) -> bool:
    """Create the demo database at ``path`` unless a file is there; True if this call made it.

    Built in a sibling temporary file and linked into place, so another process (a second
    worker, a CLI read) never sees half a file, and a file that appeared meanwhile is kept.
    Failures (no writable folder) are left for the store to report on first use.
    """
    if os.path.lexists(path):
        return False
    import tempfile  # here: the CLI's start-up path seldom needs it

    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".demo-", suffix=".db", dir=folder)
    except OSError:
        return False
    os.close(fd)
    try:
        _fill(temp)
        os.chmod(temp, 0o644)  # not secret: demo readings; mkstemp made it 0600
        os.link(temp, path)  # fails if the path exists: never replaces a file
        return True
    except (OSError, sqlite3.Error):
        return False
    finally:
        for leftover in (temp, temp + "-wal", temp + "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _fill(path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # as the sensor writer runs its file
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(READINGS_TABLE)
        conn.executemany(
            "INSERT INTO sensor_readings (sensor_id, value, recorded_at) VALUES (?, ?, ?)",
            READINGS,
        )
        schema.create(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
