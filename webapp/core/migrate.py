"""Move a ``pipeline_config`` that the original tool made to this tool's table, in place.

One ``BEGIN IMMEDIATE`` transaction does it all (a crash leaves the old table untouched or the
migration complete, never half): the old table is renamed and kept, ours is created, the rows are
copied with their time stamps in our format, the row that was active last (so it is the newest by
id and by ``updated_at``), and our indexes are added. Anything the new table's CHECK would refuse,
and a table with no active row, is refused before anything is written. On our own table it only
rewrites stamps in other formats and adds missing indexes; run twice, the second run has nothing
to do. No Flask; SQL stays in the core (README: "Migrating from the original tool").
"""

import re
from collections import namedtuple

from webapp.core import schema, timefmt
from webapp.core.changes import next_timestamp
from webapp.core.database import Database, fetch
from webapp.core.errors import InvalidInput
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.schema import TABLE

OURS, FIRST_CHECK = "ours", "own columns, another CHECK list"
#: the name each kind of old table is kept under (a number is added if it is taken)
KEPT_AS = {
    FIRST_CHECK: "pipeline_config_first_check",
    schema.SINGLE_ROW: "pipeline_config_single_row",
    schema.IS_ACTIVE: "pipeline_config_is_active",
}
CANONICAL = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")
# A stored stamp as our format, or the stored value when it is not a time (kept as it was).
STAMP = "coalesce(pm_stamp(CASE typeof({0}) WHEN 'text' THEN CAST({0} AS BLOB) ELSE {0} END), {0})"
# A stored value as JSON can hold it: a blob as SQLite's literal text (x'FF'), the rest as is.
JSON_VALUE = """CASE typeof({0}) WHEN 'blob' THEN 'x''' || hex({0}) || '''' ELSE {0} END"""
ACTIVE = "(is_active = 1 OR lower(is_active) = 'true')"
SHOWN = 10  # rows named in a refusal

Survey = namedtuple("Survey", "kind rows stamps indexes")


def canonical_stamp(value) -> str | None:
    """Return a stored time stamp in our format (``YYYY-MM-DD HH:MM:SS.SSS``, UTC), or None
    when it is not a time we can write that way (kept as stored)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        moment = timefmt.parse(value)
        text = timefmt.stored(moment) if moment is not None else None
    except (ValueError, OverflowError, OSError):
        return None
    return text if text and CANONICAL.fullmatch(text) else None


def prepare(conn) -> None:
    conn.create_function("pm_stamp", 1, canonical_stamp, deterministic=True)


def migrate(path, *, write_timeout=10.0) -> list[str]:
    """Migrate ``pipeline_config`` in the database at ``path``; return what was done, as lines.

    Raises :class:`InvalidInput` (nothing changed) for rows the new table would refuse, and
    :class:`ForeignTable` for a table that is neither ours nor one the original tool made.
    """
    db = Database(path, write_timeout=write_timeout, prepare=prepare)
    try:
        found = db.guard(lambda: db.retry(lambda: survey(db.connection())))
        if found is None or not (found.stamps or found.indexes or found.kind != OURS):
            return [nothing_to_do(found)]
        # Surveyed again inside the transaction: another writer may have changed the table.
        return db.write(lambda conn: apply(conn, survey(conn)))
    finally:
        db.close()


def survey(conn) -> Survey | None:
    """Return what the table is and what migrating it takes; refuse what cannot be migrated."""
    columns = schema.table_columns(conn)
    if not columns:
        return None
    kind = kind_of(conn, columns)
    rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    if kind == OURS:
        stamps = conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE {STAMP.format('updated_at')} IS NOT updated_at"
        ).fetchall()[0][0]
        return Survey(kind, rows, stamps, schema.missing_indexes(conn))
    stamp_column = "created_at" if kind == schema.IS_ACTIVE else "updated_at"
    refuse_types(conn)
    refuse_rows(conn, f"{stamp_column} IS NULL", f"have no {stamp_column}")
    if kind != FIRST_CHECK and rows and not active_ids(conn):
        refuse_rows(conn, "1", "are all inactive (is_active = 0): no configuration is active")
    return Survey(kind, rows, None, schema.INDEX_NAMES)


def kind_of(conn, columns) -> str:
    if tuple(name.lower() for name in columns) == schema.COLUMNS:
        accepted = set(schema.accepted_types(conn))
        return OURS if accepted == set(PIPELINE_TYPES) else FIRST_CHECK
    shape = schema.original_shape(columns)
    if shape is None:
        schema.check_columns(columns, lambda: conn.execute("PRAGMA database_list").fetchall()[0][2])
    return shape


def refuse_types(conn) -> None:
    marks = ", ".join("?" * len(PIPELINE_TYPES))
    refuse_rows(
        conn,
        f"typeof(pipeline_type) != 'text' OR pipeline_type NOT IN ({marks})",
        f"name types the new table refuses (it accepts {', '.join(PIPELINE_TYPES)}); change "
        "them to the type they mean, or delete them",
        PIPELINE_TYPES,
    )


def refuse_rows(conn, where, problem, params=()) -> None:
    """Refuse the migration, naming the rows that match ``where`` and their types, if any."""
    rows = fetch(  # fetch: another tool's type may be bytes that are not UTF-8
        conn,
        f"SELECT id, pipeline_type FROM {TABLE} WHERE {where} ORDER BY id LIMIT ?",
        (*params, SHOWN + 1),
    )
    if not rows:
        return
    named = ", ".join(f"#{row_id} ({value!r})" for row_id, value in rows[:SHOWN])
    more = " and more" if len(rows) > SHOWN else ""
    raise InvalidInput(
        f"cannot migrate pipeline_config: rows {named}{more} {problem}; "
        "then run migrate again (nothing was changed)"
    )


def active_ids(conn) -> list[int]:
    rows = conn.execute(f"SELECT id FROM {TABLE} WHERE {ACTIVE} ORDER BY id").fetchall()
    return [row[0] for row in rows]


def plural_rows(count: int) -> str:
    return f"{count} row{'' if count == 1 else 's'}"


def nothing_to_do(found) -> str:
    if found is None:
        return "nothing to migrate: there is no pipeline_config table (the first change makes one)"
    return (
        f"nothing to migrate: pipeline_config is this tool's table "
        f"({plural_rows(found.rows)}, time stamps in our format, indexes present)"
    )


def apply(conn, found) -> list[str]:
    """Do what :func:`survey` found, inside the caller's transaction; return the report."""
    if found is None or (found.kind == OURS and not (found.stamps or found.indexes)):
        return [nothing_to_do(found)]
    if found.kind == OURS:
        return rewrite_in_place(conn, found)
    kept = free_name(conn, KEPT_AS[found.kind])
    conn.execute(f'ALTER TABLE {TABLE} RENAME TO "{kept}"')
    for name in schema.INDEX_NAMES:  # ours, if this tool wrote there: the kept table lets go
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')
    schema.create(conn)
    copy_rows(conn, found.kind, kept)
    lines = [
        f"pipeline_config was the original tool's {found.kind} table ({plural_rows(found.rows)}): "
        f"kept as {kept}",
        f"copied {plural_rows(found.rows)} into this tool's pipeline_config, time stamps as "
        "YYYY-MM-DD HH:MM:SS.SSS UTC (each row's metadata keeps the original in migrated_from)",
    ]
    if found.kind != FIRST_CHECK:
        lines.append("the active row was copied last: it is the current pipeline")
    newest = conn.execute(f"{schema.SELECT_ROWS} ORDER BY id DESC LIMIT 1").fetchall()
    current = f"{newest[0][1]} (change #{newest[0][0]})" if newest else "raw (the default)"
    lines.append(f"current pipeline: {current}; indexes added: {', '.join(schema.INDEX_NAMES)}")
    lines.append(f"drop {kept} once no reader of the original tool uses it")
    return lines


def rewrite_in_place(conn, found) -> list[str]:
    lines = []
    if found.stamps:
        count = conn.execute(
            f"UPDATE {TABLE} SET updated_at = {STAMP.format('updated_at')} "
            f"WHERE {STAMP.format('updated_at')} IS NOT updated_at"
        ).rowcount
        lines.append(f"rewrote {count} time stamps as YYYY-MM-DD HH:MM:SS.SSS UTC")
    if found.indexes:
        schema.create(conn)
        lines.append(f"added indexes: {', '.join(found.indexes)}")
    return lines


def free_name(conn, name) -> str:
    """Return ``name``, or ``name_2``, ``name_3``… whichever no table or index has yet."""
    taken = {row[0] for row in conn.execute("SELECT name FROM sqlite_master").fetchall()}
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def copy_rows(conn, kind, kept) -> None:
    """Copy the kept table's rows into ours: oldest first, the active row (the newest of them,
    if the original left several) last, so it is the newest by id: the current pipeline."""
    if kind == FIRST_CHECK:  # our columns: ids and metadata kept, stamps rewritten
        conn.execute(
            f"INSERT INTO {TABLE} (id, pipeline_type, updated_at, updated_by, metadata) "
            f"SELECT id, pipeline_type, {STAMP.format('updated_at')}, updated_by, metadata "
            f'FROM "{kept}" ORDER BY id'
        )
        return
    stamp, by = (
        ("created_at", "created_by") if kind == schema.IS_ACTIVE else ("updated_at", "updated_by")
    )
    active = f'CASE WHEN id = (SELECT max(id) FROM "{kept}" WHERE {ACTIVE}) THEN 1 ELSE 0 END'
    order = f"{active}, {STAMP.format(stamp)}, id"
    config = (
        ", 'config', CASE WHEN typeof(config_json) = 'text' AND json_valid(config_json) "
        f"THEN json(config_json) ELSE {JSON_VALUE.format('config_json')} END"
    )
    source = (
        f"json_object('table', '{kept}', 'id', id, '{stamp}', {JSON_VALUE.format(stamp)}, "
        f"'is_active', {JSON_VALUE.format('is_active')}"
        f"{config if kind == schema.SINGLE_ROW else ''})"
    )
    conn.execute(
        f"INSERT INTO {TABLE} (pipeline_type, updated_at, updated_by, metadata) "
        f"SELECT pipeline_type, {STAMP.format(stamp)}, {by}, json_object("
        f"'reason', 'migrated from the original tool''s {kind} table', "
        f"'previous', lag(pipeline_type) OVER (ORDER BY {order}), 'source', 'migrate', "
        f"'migrated_from', {source}) "
        f'FROM "{kept}" ORDER BY {order}'
    )
    stamp_active_last(conn)


def stamp_active_last(conn) -> None:
    """Give the row copied last (the active one) a stamp after every other row's, as
    :func:`next_timestamp` does for a new change: readers by ``updated_at`` then agree."""
    rows = conn.execute(
        f"SELECT id, updated_at, (SELECT max(updated_at) FROM {TABLE} AS other "
        f"WHERE other.id < last.id AND updated_at >= '0' AND updated_at < ':') "
        f"FROM {TABLE} AS last ORDER BY id DESC LIMIT 1"
    ).fetchall()
    if not rows or rows[0][2] is None:
        return
    last_id, last, newest = rows[0]
    moment = timefmt.parse(canonical_stamp(last)) if canonical_stamp(last) else None
    newest_moment = timefmt.parse(newest)
    if moment is None or newest_moment is None or moment > newest_moment:
        return
    stamp = next_timestamp(moment, newest_moment)
    conn.execute(
        f"UPDATE {TABLE} SET updated_at = ? WHERE id = ?", (timefmt.stored(stamp), last_id)
    )


__all__ = ["canonical_stamp", "migrate"]
