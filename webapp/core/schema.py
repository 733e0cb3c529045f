"""The ``pipeline_config`` table: its exact seed definition, our indexes, and how to tell it
from a table that another tool made. No Flask; plain ``sqlite3`` connections in, facts out.
"""

import re

from webapp.core.errors import ForeignTable
from webapp.core.pipelines import PIPELINE_TYPES

TABLE = "pipeline_config"

# Exactly the seed tool's schema: the uploader and older scripts read this table too.
SCHEMA = """CREATE TABLE IF NOT EXISTS pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL CHECK(pipeline_type IN ('raw', 'schematized', 'filtered', 'aggregated')),
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_by TEXT,
    metadata TEXT  -- JSON field for additional information
)"""  # noqa: E501 (kept byte-for-byte as the seed tool wrote it)

# Indexes keep filtered pages, the timeline and the operator list flat in history size; the
# table's columns stay the seed's. Created by our first write (a read never changes the file).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS pipeline_config_updated_at ON pipeline_config (updated_at)",
    "CREATE INDEX IF NOT EXISTS pipeline_config_type ON pipeline_config (pipeline_type)",
    "CREATE INDEX IF NOT EXISTS pipeline_config_updated_by ON pipeline_config (updated_by)",
)

COLUMNS = ("id", "pipeline_type", "updated_at", "updated_by", "metadata")
SELECT_ROWS = "SELECT id, pipeline_type, updated_at, updated_by, metadata FROM pipeline_config"
TABLE_SQL = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
CHECK_LIST = re.compile(r"CHECK\s*\(\s*pipeline_type\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def create(conn) -> None:
    """Create the table and our indexes where missing (inside the caller's transaction)."""
    conn.execute(SCHEMA)
    for statement in INDEXES:
        conn.execute(statement)


def check_shape(conn) -> None:
    """Refuse a ``pipeline_config`` with other columns (for example the seed tool's later
    ``id, pipeline_type, created_at, created_by, is_active``): nothing may read or write it."""
    columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})").fetchall())
    if columns and columns != COLUMNS:
        path = conn.execute("PRAGMA database_list").fetchall()[0][2]
        raise ForeignTable(
            f"pipeline_config in {path} has another tool's columns ({', '.join(columns)}), "
            f"not ({', '.join(COLUMNS)}); nothing was read or written (README: Troubleshooting)"
        )


def accepted_types(conn) -> tuple[str, ...]:
    """Return the types this table's CHECK accepts (another tool's table may list others)."""
    rows = conn.execute(TABLE_SQL, (TABLE,)).fetchall()
    return accepted_types_of(rows[0][0] if rows else None)


def accepted_types_of(table_sql: str | None) -> tuple[str, ...]:
    """Return the types a ``CREATE TABLE`` statement's CHECK list names (ours without one)."""
    match = CHECK_LIST.search(table_sql or "")
    if not match:
        return PIPELINE_TYPES
    return tuple(value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", match[1]))
