"""The tables the original tool made over its history, built on real SQLite files for the shape
and migration tests (README: "Migrating from the original tool")."""

import sqlite3

from webapp.core.schema import SCHEMA

FIRST_CHECK = "'raw', 'schematized', 'aggregated', 'emergency', 'regional'"

#: shape name -> CREATE TABLE statement, as the original tool's versions wrote them
SHAPES = {
    "seed": SCHEMA,
    "seed-first-check": SCHEMA.replace(
        "'raw', 'schematized', 'filtered', 'aggregated'", FIRST_CHECK
    ),
    "single-row": (
        "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY CHECK(id = 1), "
        "pipeline_type TEXT NOT NULL, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
        "updated_by TEXT, config_json TEXT, is_active BOOLEAN DEFAULT 1)"
    ),
    "is-active": (
        "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "pipeline_type TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
        "created_by TEXT, is_active BOOLEAN DEFAULT 1)"
    ),
    # Not the original's: our columns and one more, which every reader refuses alike.
    "extra-column": SCHEMA.replace("metadata TEXT", "metadata TEXT, note TEXT"),
}

# Time stamps as the original's versions wrote them: SQLite's text, ISO with an offset, with Z.
STAMPS = ("2026-11-20 {:02d}:00:00", "2026-11-20T{:02d}:00:00+00:00", "2026-11-20T{:02d}:00:00.5Z")


def stamp(i):
    """The ``i``-th row's time stamp: hour 9 + ``i``, in one of the original's formats."""
    return STAMPS[i % len(STAMPS)].format(9 + i)


def make_shape(path, shape, rows=(), *, wal=False):
    """Create ``pipeline_config`` of ``shape`` in the (existing) database ``path`` with ``rows``:
    tuples of the table's own columns after ``id`` (for the seed shapes, without metadata)."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SHAPES[shape])
    for row in rows:
        columns = {
            "single-row": "pipeline_type, updated_at, updated_by, config_json, is_active",
            "is-active": "pipeline_type, created_at, created_by, is_active",
        }.get(shape, "pipeline_type, updated_at, updated_by")
        marks = ", ".join("?" * len(row))
        conn.execute(f"INSERT INTO pipeline_config ({columns}) VALUES ({marks})", row)
    conn.commit()
    conn.close()
    return path


def history_rows(*types, active=None):
    """Rows of the is_active history table: one per type, ``active`` (an index) marked active."""
    last = len(types) - 1 if active is None else active
    return [(kind, stamp(i), f"op{i}", int(i == last)) for i, kind in enumerate(types)]


def table_dump(path, table="pipeline_config"):
    """Return every row of ``table`` and its CREATE statement (to prove nothing changed)."""
    conn = sqlite3.connect(path)
    try:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchall()
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() if sql else []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        conn.close()
    return sql, rows, sorted(tables)
