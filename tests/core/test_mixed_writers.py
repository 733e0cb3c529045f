"""What holds, and what does not, when the original tool writes the table beside us (README:
"Mixed writers"; issue 16.4). The original stamps rows with SQLite's ``CURRENT_TIMESTAMP``
(whole seconds); we stamp milliseconds. Each claim of the README is one test here."""

import sqlite3

import pytest

from webapp.core.store import PipelineStore

NEWEST_BY_TIME = "SELECT id FROM pipeline_config ORDER BY updated_at DESC LIMIT 1"
NEWEST_BY_ID = "SELECT id FROM pipeline_config ORDER BY id DESC LIMIT 1"


def original_writes(db_path, pipeline_type, stamp):
    """Insert a row as the original tool does (its own stamp text, no metadata)."""
    conn = sqlite3.connect(db_path)
    cursor = conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by) VALUES (?, ?, ?)",
        (pipeline_type, stamp, "original"),
    )
    conn.commit()
    conn.close()
    return cursor.lastrowid


def newest(db_path, sql):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()[0][0]
    finally:
        conn.close()


@pytest.fixture
def ours(store):
    """One row of ours; returns its id and its stamp (``YYYY-MM-DD HH:MM:SS.SSS``)."""
    change = store.set("filtered", updated_by="ops", reason="ours").change
    return change.id, change.updated_at_text


def test_holds_an_original_row_of_an_earlier_second_sorts_before_ours(store, db_path, ours):
    our_id, stamp = ours
    original_writes(db_path, "raw", "2000-01-01 00:00:00")  # seconds apart: text order is right
    assert newest(db_path, NEWEST_BY_TIME) == our_id


def test_holds_our_row_after_an_original_row_is_the_newest_by_both_orders(store, db_path):
    first = store.set("filtered", updated_by="ops", reason="ours").change
    # The original writes in the same second as our row, after it...
    original_writes(db_path, "aggregated", first.updated_at_text[:19])
    # ...and our next row is still the newest by id and by updated_at.
    ours = store.set("schematized", updated_by="ops", reason="ours again").change
    assert newest(db_path, NEWEST_BY_ID) == newest(db_path, NEWEST_BY_TIME) == ours.id


def test_does_not_hold_an_original_row_in_the_same_second_after_ours_sorts_first(
    store, db_path, ours
):
    our_id, stamp = ours
    # '…:10' < '…:10.123' as text: the original's newer row sorts before our older one.
    theirs = original_writes(db_path, "aggregated", stamp[:19])
    assert newest(db_path, NEWEST_BY_ID) == theirs  # what the uploader applies: theirs
    assert newest(db_path, NEWEST_BY_TIME) == our_id  # the original's reader: ours, stale
    assert store.current().id == theirs  # every reader of this tool orders by id


def test_does_not_hold_two_original_rows_in_one_second_tie(db_path, store, ours):
    our_id, stamp = ours
    second = "2999-01-01 00:00:00"  # both after ours; CURRENT_TIMESTAMP cannot tell them apart
    first_id = original_writes(db_path, "raw", second)
    last_id = original_writes(db_path, "aggregated", second)
    conn = sqlite3.connect(db_path)
    tied = conn.execute(
        "SELECT id FROM pipeline_config WHERE updated_at = ? ORDER BY id", (second,)
    ).fetchall()
    conn.close()
    assert tied == [(first_id,), (last_id,)]  # ORDER BY updated_at alone has no answer
    assert newest(db_path, NEWEST_BY_ID) == last_id


def test_migrate_does_not_reorder_a_same_second_row_readers_must_order_by_id(store, db_path, ours):
    from webapp.core.migrate import migrate

    our_id, stamp = ours
    theirs = original_writes(db_path, "aggregated", stamp[:19])
    assert newest(db_path, NEWEST_BY_TIME) != theirs
    migrate(db_path)  # rewrites '…:10' as '…:10.000': still before '…:10.123'
    assert newest(db_path, NEWEST_BY_TIME) == our_id
    # So migrating the rows is not enough: the original's readers must order by id.
    with PipelineStore(db_path) as again:
        assert again.current().id == theirs
