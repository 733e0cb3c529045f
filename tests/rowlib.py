"""Rows as another tool writes them: a plain ``sqlite3`` INSERT, none of our rules applied."""

import sqlite3


def insert_row(db_path, pipeline_type, updated_at, updated_by="tool", metadata=None) -> int:
    """Insert one row into ``pipeline_config`` in its own connection; return its id."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
                "VALUES (?, ?, ?, ?)",
                (pipeline_type, updated_at, updated_by, metadata),
            )
    finally:
        conn.close()
    return cursor.lastrowid
