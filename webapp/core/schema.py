"""The ``pipeline_config`` table: its exact seed definition, our indexes, and how to tell it
from a table that another tool made. No Flask; plain ``sqlite3`` connections in, facts out.
"""

import json
import re

from webapp.core.database import fetch
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

INDEX_NAMES = tuple(statement.split()[5] for statement in INDEXES)
COLUMNS = ("id", "pipeline_type", "updated_at", "updated_by", "metadata")
SELECT_ROWS = "SELECT id, pipeline_type, updated_at, updated_by, metadata FROM pipeline_config"
TABLE_SQL = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
CHECK_LIST = re.compile(r"CHECK\s*\(\s*pipeline_type\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def create(conn) -> None:
    """Create the table and our indexes where missing (inside the caller's transaction)."""
    conn.execute(SCHEMA)
    for statement in INDEXES:
        conn.execute(statement)


# The tables the original tool made over its history, by their columns (README: "Migrating
# from the original tool"). Our own columns with another CHECK list are read as they are.
SINGLE_ROW = "single-row"
IS_ACTIVE = "is_active history"
ORIGINAL_SHAPES = {
    ("id", "pipeline_type", "updated_at", "updated_by", "config_json", "is_active"): SINGLE_ROW,
    ("id", "pipeline_type", "created_at", "created_by", "is_active"): IS_ACTIVE,
}
# The columns in declaration order, as one JSON array (column names may hold any character).
COLUMNS_SQL = (
    "SELECT json_group_array(name) FROM "
    f"(SELECT name FROM pragma_table_info('{TABLE}') ORDER BY cid)"
)


def table_columns(conn) -> tuple[str, ...]:
    """Return the columns of ``pipeline_config`` in order (empty when there is no table)."""
    return tuple(json.loads(fetch(conn, COLUMNS_SQL)[0][0]))


def original_shape(columns) -> str | None:
    """Return which of the original tool's tables ``columns`` are, or None."""
    return ORIGINAL_SHAPES.get(tuple(name.lower() for name in columns))


def check_columns(columns, where) -> None:
    """Refuse a ``pipeline_config`` with any columns but ours: the one shape rule that every
    reader (store, CLI, web, the uploader function) applies, so none reads what another refuses.
    ``where()`` names the database, asked only for a refusal.
    """
    columns = tuple(columns)
    if not columns or tuple(name.lower() for name in columns) == COLUMNS:
        return
    path = where()
    shape = original_shape(columns)
    if shape:
        remedy = (
            f"it is the original tool's {shape} table: `pipeline-manager --db PATH migrate` "
            "moves it to this tool (README: Migrating from the original tool)"
        )
    else:
        remedy = "README: Troubleshooting"
    raise ForeignTable(
        f"pipeline_config in {path} has another tool's columns ({', '.join(columns)}), "
        f"not ({', '.join(COLUMNS)}); nothing was read or written; {remedy}"
    )


def check_shape(conn) -> None:
    """Refuse a ``pipeline_config`` with other columns than ours (see :func:`check_columns`)."""
    check_columns(
        table_columns(conn), lambda: conn.execute("PRAGMA database_list").fetchall()[0][2]
    )


def missing_indexes(conn) -> tuple[str, ...]:
    """Return the names of our indexes that ``pipeline_config`` lacks (a table another tool
    made has none: readers then scan, see README "Rows written by other tools")."""
    present = {row[1] for row in conn.execute(f"PRAGMA index_list({TABLE})").fetchall()}
    return tuple(name for name in INDEX_NAMES if name not in present)


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
