"""The store on real SQLite files: schema, connection settings, reads, sets, history, uploader."""

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from webapp.core.errors import ConflictError, DatabaseUnusable, InvalidInput
from webapp.core.pipelines import DEFAULT_BUCKETS
from webapp.core.store import PipelineStore
from webapp.uploader import active_pipeline, connect_uploader

# Byte for byte from the seed tool's README ("Database Schema"), as SQLite stores it.
SEED_SQL = """CREATE TABLE pipeline_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_type TEXT NOT NULL CHECK(pipeline_type IN ('raw', 'schematized', 'filtered', 'aggregated')),
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_by TEXT,
    metadata TEXT  -- JSON field for additional information
)"""  # noqa: E501

# PRAGMA table_info: (cid, name, type, notnull, dflt_value, pk)
SEED_COLUMNS = [
    (0, "id", "INTEGER", 0, None, 1),
    (1, "pipeline_type", "TEXT", 1, None, 0),
    (2, "updated_at", "TIMESTAMP", 1, "CURRENT_TIMESTAMP", 0),
    (3, "updated_by", "TEXT", 0, None, 0),
    (4, "metadata", "TEXT", 0, None, 0),
]

# Header bytes SQLite rewrites when a file switches to WAL: write/read format versions (18, 19),
# file change counter (24-27) and version-valid-for (92-95).
WAL_HEADER_BYTES = {18, 19, *range(24, 28), *range(92, 96)}


def query(path, sql, params=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def table_sql(path, name="pipeline_config"):
    rows = query(path, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return rows[0][0] if rows else None


def row_count(path):
    return query(path, "SELECT count(*) FROM pipeline_config")[0][0]


def to_wal(path):
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchall() == [("wal",)]
    conn.close()


def insert_raw(path, rows):
    """Insert ``(pipeline_type, updated_at, updated_by, metadata)`` rows as another tool would."""
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()


# -- schema ------------------------------------------------------------------------------------


def test_first_write_creates_exactly_the_seed_schema(store, db_path):
    store.set("filtered", updated_by="ops")
    assert table_sql(db_path) == SEED_SQL
    assert query(db_path, "PRAGMA table_info(pipeline_config)") == SEED_COLUMNS
    # AUTOINCREMENT: SQLite keeps the high-water mark in sqlite_sequence.
    assert query(db_path, "SELECT seq FROM sqlite_sequence WHERE name = 'pipeline_config'") == [
        (1,)
    ]
    # CHECK: the table itself refuses an unknown type.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        insert_raw(db_path, [("bogus", "2026-01-01 00:00:00", "x", "{}")])
    # Exactly one new table (sqlite_sequence is the sensor table's too) and our three indexes
    # (they keep every read flat in history size); no trigger.
    names = query(db_path, "SELECT type, name FROM sqlite_master ORDER BY name")
    assert names == [
        ("table", "pipeline_config"),
        ("index", "pipeline_config_type"),
        ("index", "pipeline_config_updated_at"),
        ("index", "pipeline_config_updated_by"),
        ("table", "sensor_readings"),
        ("table", "sqlite_sequence"),
    ]


def test_existing_seed_table_is_used_as_is(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute(SEED_SQL)
    conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, updated_by, metadata) "
        "VALUES ('aggregated', 'seed-tool', '{\"reason\": \"old tool\"}')"
    )
    conn.commit()
    conn.close()
    with PipelineStore(db_path) as store:
        assert store.current().pipeline_type == "aggregated"
        assert store.current().reason == "old tool"
        assert store.set("raw", updated_by="ops").change.previous == "aggregated"
    assert table_sql(db_path) == SEED_SQL


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.current(),
        lambda s: active_pipeline(s.db.connection()),
        lambda s: s.history(),
        lambda s: s.count(),
        lambda s: s.changes_after(0),
        lambda s: s.operators(),
        lambda s: s.get(1),
        lambda s: s.status(),
        lambda s: s.data_version(),
    ],
    ids=[
        "current",
        "active",
        "history",
        "count",
        "changes_after",
        "operators",
        "get",
        "status",
        "data_version",
    ],
)
def test_reads_never_create_the_table(db_path, read):
    before = query(db_path, "SELECT * FROM sqlite_master")
    with PipelineStore(db_path) as store:
        read(store)
    assert table_sql(db_path) is None
    assert query(db_path, "SELECT * FROM sqlite_master") == before


def test_sensor_tables_are_untouched(db_path):
    before_sql = query(db_path, "SELECT type, name, sql FROM sqlite_master")
    before_rows = query(db_path, "SELECT * FROM sensor_readings ORDER BY id")
    with PipelineStore(db_path) as store:
        for pipeline_type in ("filtered", "aggregated", "raw", "schematized"):
            store.set(pipeline_type, updated_by="ops", reason="r")
        store.revert(1, updated_by="ops")
        store.history(limit=100)
    after_sql = query(db_path, "SELECT type, name, sql FROM sqlite_master")
    assert [row for row in after_sql if row[1] == "sensor_readings"] == [
        row for row in before_sql if row[1] == "sensor_readings"
    ]
    assert {row[1] for row in after_sql} - {row[1] for row in before_sql} == {
        "pipeline_config",
        "pipeline_config_type",
        "pipeline_config_updated_at",
        "pipeline_config_updated_by",
    }
    assert query(db_path, "SELECT * FROM sensor_readings ORDER BY id") == before_rows


# -- connections -------------------------------------------------------------------------------


def test_no_connection_before_first_use(db_path, tmp_path):
    store = PipelineStore(db_path)
    assert store.db._conn is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensor_data.db"]
    # A store on a missing path is only refused when used: nothing happens at construction.
    PipelineStore(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_every_connection_is_wal_with_synchronous_full(db_path):
    with PipelineStore(db_path) as store:
        store.initialize()  # the first write switches the file to WAL
    for _ in range(3):  # each new store opens a new connection
        with PipelineStore(db_path) as store:
            conn = store.db.connection()
            assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchall()[0][0] == 2  # FULL
            assert conn.execute("PRAGMA busy_timeout").fetchall()[0][0] > 0
            assert not conn.in_transaction
            store.current()
            assert not conn.in_transaction  # a read leaves no snapshot open
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]  # persistent on the file


def test_embedded_database_is_created_with_the_same_settings(tmp_path):
    path = tmp_path / "instance" / "pipeline.db"
    path.parent.mkdir()
    with PipelineStore(path, create=True) as store:
        assert store.current().is_default
        store.set("schematized", updated_by="ops")
        assert store.db.connection().execute("PRAGMA synchronous").fetchall()[0][0] == 2
    assert table_sql(path) == SEED_SQL
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_named_path_is_never_created(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(DatabaseUnusable, match="not found"):
        PipelineStore(path).current()
    assert list(tmp_path.iterdir()) == []


# -- reads -------------------------------------------------------------------------------------


def test_empty_database_reads_as_raw_default_and_writes_nothing(db_path, tmp_path):
    to_wal(db_path)  # as the sensor writer keeps it
    before = db_path.read_bytes()
    with PipelineStore(db_path) as store:
        change = store.current()
        assert (change.pipeline_type, change.bucket) == ("raw", "ingestion")
        assert change.is_default and change.id is None and change.version == 0
        assert change.to_dict()["default"] is True
        assert change.updated_at is None and change.updated_by is None
        assert tuple(active_pipeline(store.db.connection())) == ("raw", "ingestion")
        assert store.history() == [] and store.count() == 0
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensor_data.db"]
    assert table_sql(db_path) is None


def test_a_read_leaves_a_rollback_journal_file_as_it_was(db_path):
    before = db_path.read_bytes()
    with PipelineStore(db_path) as store:
        assert store.current().is_default
        store.history()
        store.status()
    assert db_path.read_bytes() == before
    assert query(db_path, "PRAGMA journal_mode") == [("delete",)]


def test_the_first_write_switches_a_rollback_journal_file_to_wal(db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops")
    header = db_path.read_bytes()[:100]
    assert header[18:20] == b"\x02\x02"  # WAL
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_empty_table_reads_as_default(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute(SEED_SQL)
    conn.commit()
    conn.close()
    with PipelineStore(db_path) as store:
        assert store.current().is_default
        assert store.current().pipeline_type == "raw"
    assert row_count(db_path) == 0


def test_current_is_newest_by_id_when_rows_share_a_second(db_path):
    with PipelineStore(db_path) as store:
        store.initialize()
    same_second = "2026-11-25 10:00:00"
    insert_raw(
        db_path,
        [
            ("filtered", same_second, "a", json.dumps({"reason": "1"})),
            ("aggregated", same_second, "b", json.dumps({"reason": "2"})),
            ("schematized", same_second, "c", json.dumps({"reason": "3"})),
        ],
    )
    with PipelineStore(db_path) as store:
        current = store.current()
        assert (current.id, current.pipeline_type, current.updated_by) == (3, "schematized", "c")
        assert active_pipeline(store.db.connection()).pipeline_type == "schematized"
        assert [c.id for c in store.history()] == [3, 2, 1]
        # A later id with an *earlier* timestamp (a clock step back) is still current.
        insert_raw(db_path, [("raw", "2020-01-01 00:00:00", "d", "{}")])
        assert store.current().id == 4 and store.current().pipeline_type == "raw"
        conn = connect_uploader(db_path)
        assert tuple(active_pipeline(conn)) == ("raw", "ingestion")
        conn.close()


def test_quick_sets_within_one_second_keep_their_order(store):
    types = ["filtered", "aggregated", "schematized", "raw", "filtered"]
    ids = [store.set(t, updated_by="ops", reason=str(i)).change.id for i, t in enumerate(types)]
    assert ids == sorted(ids)
    current = store.current()
    assert (current.id, current.pipeline_type, current.reason) == (ids[-1], "filtered", "4")


def test_updated_at_is_utc_and_iso(store):
    before = datetime.now(UTC).replace(microsecond=0)
    change = store.set("filtered", updated_by="ops").change
    assert change.updated_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= change.updated_at <= datetime.now(UTC)
    text = change.to_dict()["updated_at"]
    assert text.endswith("Z") and "T" in text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == change.updated_at


def test_rows_written_by_other_tools_are_read_safely(db_path):
    with PipelineStore(db_path) as store:
        store.initialize()
    insert_raw(
        db_path,
        [
            ("filtered", "2026-11-25 10:00:00", None, None),
            ("aggregated", "2026-11-25 10:00:01", "x", "not json"),
            ("raw", "2026-11-25 10:00:02", "y", "[1, 2]"),
        ],
    )
    with PipelineStore(db_path) as store:
        history = store.history()
    assert [c.metadata for c in history] == [{"value": [1, 2]}, {"unparsed": "not json"}, {}]
    assert history[-1].updated_by is None
    assert history[0].updated_at == datetime(2026, 11, 25, 10, 0, 2, tzinfo=UTC)


# -- set ---------------------------------------------------------------------------------------


def test_set_writes_one_row_with_metadata(store, db_path):
    result = store.set("filtered", updated_by="ops", reason="Enabling anomaly filtering")
    assert result.changed is True
    change = result.change
    assert (change.id, change.pipeline_type, change.bucket, change.updated_by) == (
        1,
        "filtered",
        "enriched",
        "ops",
    )
    assert change.metadata == {
        "reason": "Enabling anomaly filtering",
        "previous": None,
        "previous_id": None,
        "source": "cli",
    }
    second = store.set("aggregated", updated_by="web-user", reason="why", source="web").change
    assert second.metadata == {
        "reason": "why",
        "previous": "filtered",
        "previous_id": 1,
        "source": "web",
    }
    stored = query(db_path, "SELECT metadata FROM pipeline_config WHERE id = 2")[0][0]
    assert json.loads(stored) == second.metadata
    assert result.to_dict()["changed"] is True


def test_set_is_idempotent(store, db_path):
    first = store.set("filtered", updated_by="ops", reason="first")
    again = store.set("filtered", updated_by="someone-else", reason="again", source="api")
    assert again.changed is False
    assert again.change.id == first.change.id
    assert again.change.updated_by == "ops"  # the current change, unaltered
    assert row_count(db_path) == 1
    assert again.to_dict()["changed"] is False


def test_setting_raw_on_a_never_set_database_records_the_decision(store, db_path):
    result = store.set("raw", updated_by="ops", reason="explicit")
    assert result.changed is True and result.change.id == 1
    assert result.change.previous is None
    assert store.set("raw", updated_by="ops").changed is False
    assert row_count(db_path) == 1


def test_compare_and_set(store, db_path):
    assert store.set("filtered", updated_by="ops", expect_id=0).change.id == 1
    assert store.set("aggregated", updated_by="ops", expect_id=1).change.id == 2
    with pytest.raises(ConflictError) as caught:
        store.set("raw", updated_by="late", reason="stale form", expect_id=1)
    message = str(caught.value)
    when = store.current().to_dict()["updated_at"]
    assert "aggregated" in message and "ops" in message and when in message
    assert "#2" in message and "nothing was written" in message
    assert "\n" not in message
    assert caught.value.current.id == 2
    assert row_count(db_path) == 2
    assert store.current().pipeline_type == "aggregated"
    # expect_id=0 ("never set") conflicts once something was set.
    with pytest.raises(ConflictError):
        store.set("raw", updated_by="late", expect_id=0)
    assert row_count(db_path) == 2


def test_compare_and_set_on_a_never_set_database(store, db_path):
    with pytest.raises(ConflictError, match="nothing has been set yet"):
        store.set("filtered", updated_by="ops", expect_id=3)
    assert table_sql(db_path) is None  # the whole unit of work was rolled back


def test_compare_and_set_is_checked_before_idempotency(store):
    store.set("filtered", updated_by="ops")
    store.set("aggregated", updated_by="ops")
    # The type asked for is already current, but the caller saw an older version: refuse.
    with pytest.raises(ConflictError):
        store.set("aggregated", updated_by="ops", expect_id=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pipeline_type": "bogus", "updated_by": "ops"}, "invalid pipeline type"),
        ({"pipeline_type": "RAW", "updated_by": "ops"}, "invalid pipeline type"),
        ({"pipeline_type": "raw", "updated_by": ""}, "operator name is required"),
        ({"pipeline_type": "raw", "updated_by": "   "}, "operator name is required"),
        ({"pipeline_type": "raw", "updated_by": "x" * 201}, "too long"),
        ({"pipeline_type": "raw", "updated_by": "ops", "reason": "r" * 2001}, "too long"),
        ({"pipeline_type": "raw", "updated_by": "ops", "reason": "a\x00b"}, "U\\+0000"),
        ({"pipeline_type": "raw", "updated_by": "ops", "source": "email"}, "invalid source"),
        ({"pipeline_type": "raw", "updated_by": "ops", "expect_id": -1}, "whole number"),
        ({"pipeline_type": "raw", "updated_by": "ops", "expect_id": "1"}, "whole number"),
    ],
)
def test_invalid_set_writes_nothing(db_path, kwargs, match):
    before = db_path.read_bytes()
    with PipelineStore(db_path) as store, pytest.raises(InvalidInput, match=match):
        store.set(**kwargs)
    assert db_path.read_bytes() == before
    assert table_sql(db_path) is None


def test_reason_is_optional_and_trimmed(store):
    assert store.set("filtered", updated_by=" ops ").change.reason is None
    change = store.set("raw", updated_by="ops", reason="  one line, trimmed ").change
    assert change.reason == "one line, trimmed"
    assert store.current().updated_by == "ops"


def test_a_store_may_require_a_reason(db_path):
    with PipelineStore(db_path, require_reason=True) as store:
        with pytest.raises(InvalidInput, match="reason is required"):
            store.set("filtered", updated_by="ops", reason="  ")
        assert store.set("filtered", updated_by="ops", reason="why").changed
        # One rule for every reason (issue 16.5): a revert needs one too.
        with pytest.raises(InvalidInput, match="reason is required"):
            store.revert(1, updated_by="ops")
        assert store.revert(1, updated_by="ops", reason="again").change.reason == "why"  # no-op


# -- revert ------------------------------------------------------------------------------------


def test_revert_writes_a_new_row_naming_its_target(store, db_path):
    store.set("filtered", updated_by="ops", reason="one")
    store.set("aggregated", updated_by="ops", reason="two")
    result = store.revert(1, updated_by="oncall")
    assert result.changed is True
    change = result.change
    assert (change.id, change.pipeline_type, change.updated_by) == (3, "filtered", "oncall")
    assert change.metadata["reverts_to"] == 1
    assert change.metadata["previous"] == "aggregated"
    assert change.metadata["source"] == "web"
    assert change.reason == "revert to change #1"
    assert row_count(db_path) == 3
    # Rows 1 and 2 are unaltered: history is append-only.
    assert [c.reason for c in store.history()] == ["revert to change #1", "two", "one"]


def test_revert_with_reason_and_compare_and_set(store):
    store.set("filtered", updated_by="ops")
    store.set("aggregated", updated_by="ops")
    with pytest.raises(ConflictError):
        store.revert(1, updated_by="oncall", expect_id=1)
    result = store.revert(1, updated_by="oncall", reason="bad deploy", source="api", expect_id=2)
    assert result.change.reason == "bad deploy" and result.change.source == "api"


def test_revert_to_the_current_type_is_a_no_op_and_unknown_ids_are_refused(store, db_path):
    store.set("filtered", updated_by="ops")
    assert store.revert(1, updated_by="ops").changed is False
    with pytest.raises(InvalidInput, match="no change #99"):
        store.revert(99, updated_by="ops")
    assert row_count(db_path) == 1


# -- history -----------------------------------------------------------------------------------


@pytest.fixture
def filled(db_path):
    with PipelineStore(db_path) as store:
        store.initialize()
    insert_raw(
        db_path,
        [
            ("filtered", "2026-11-20 08:00:00", "alice", json.dumps({"reason": "1"})),
            ("aggregated", "2026-11-21 08:00:00", "bob", json.dumps({"reason": "2"})),
            ("raw", "2026-11-22 08:00:00", "alice", json.dumps({"reason": "3"})),
            ("filtered", "2026-11-23 08:00:00", "carol", json.dumps({"reason": "4"})),
            ("schematized", "2026-11-23 08:00:00", "bob", json.dumps({"reason": "5"})),
        ],
    )
    with PipelineStore(db_path) as store:
        yield store


def ids(changes):
    return [change.id for change in changes]


def test_history_is_newest_first_with_limit_and_cursors(filled):
    assert ids(filled.history()) == [5, 4, 3, 2, 1]
    assert ids(filled.history(limit=2)) == [5, 4]
    assert ids(filled.history(limit=2, before=4)) == [3, 2]
    assert ids(filled.history(limit=2, after=2)) == [4, 3]  # the two just newer, newest first
    assert filled.count() == 5
    assert filled.count(upto=3) == 3
    with pytest.raises(InvalidInput):
        filled.history(limit=0)


def test_history_filters(filled):
    assert ids(filled.history(pipeline_type="filtered")) == [4, 1]
    assert ids(filled.history(updated_by="alice")) == [3, 1]
    assert ids(filled.history(updated_by="bob", pipeline_type="schematized")) == [5]
    assert ids(filled.history(since=datetime(2026, 11, 22, 8, tzinfo=UTC))) == [5, 4, 3]
    assert ids(filled.history(until=datetime(2026, 11, 22, 8, tzinfo=UTC))) == [2, 1]
    # Timestamps given in another zone are compared in UTC.
    plus_two = timezone_offset(hours=2)
    assert ids(filled.history(since=datetime(2026, 11, 23, 10, tzinfo=plus_two))) == [5, 4]
    assert ids(filled.history(before=4)) == [3, 2, 1]
    assert filled.count(updated_by="bob") == 2
    assert filled.operators() == ["alice", "bob", "carol"]
    assert filled.operators(limit=2) == ["alice", "bob"]
    with pytest.raises(InvalidInput):
        filled.history(pipeline_type="bogus")


def timezone_offset(hours):
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_changes_after_get_and_active_at(filled):
    assert ids(filled.changes_after(3)) == [4, 5]
    assert filled.changes_after(5) == []
    assert filled.get(2).pipeline_type == "aggregated" and filled.get(42) is None
    assert filled.active_at(datetime(2026, 11, 21, 12, tzinfo=UTC)).id == 2
    assert filled.active_at(datetime(2026, 1, 1, tzinfo=UTC)).is_default
    assert filled.active_at(datetime(2026, 11, 23, 8, tzinfo=UTC)).id == 5  # same time: by id


# -- the uploader's read -----------------------------------------------------------------------


def test_uploader_read(db_path, tmp_path):
    conn = connect_uploader(db_path)
    try:
        assert tuple(active_pipeline(conn)) == ("raw", "ingestion")  # no table yet
        assert not conn.in_transaction
        with PipelineStore(db_path) as store:
            store.set("aggregated", updated_by="ops")
            # Another connection's commit is seen at once: no snapshot is held between reads.
            assert active_pipeline(conn) == ("aggregated", "aggregated")
            store.set("filtered", updated_by="ops")
        result = active_pipeline(conn)
        assert result.pipeline_type == "filtered" and result.bucket == "enriched"
        custom = {**DEFAULT_BUCKETS, "filtered": "s3-enriched-eu"}
        assert active_pipeline(conn, custom) == ("filtered", "s3-enriched-eu")
        assert not conn.in_transaction
    finally:
        conn.close()
    assert table_sql(db_path) == SEED_SQL


def test_uploader_read_of_an_empty_table_writes_nothing(db_path, tmp_path):
    to_wal(db_path)
    before = db_path.read_bytes()
    conn = connect_uploader(db_path)
    assert tuple(active_pipeline(conn)) == ("raw", "ingestion")
    conn.close()
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensor_data.db"]


def test_connect_uploader_refuses_a_missing_file(tmp_path):
    with pytest.raises(DatabaseUnusable, match="not found"):
        connect_uploader(tmp_path / "missing.db")
    with pytest.raises(DatabaseUnusable):
        connect_uploader(tmp_path)  # a directory
    assert list(tmp_path.iterdir()) == []


def test_store_buckets_are_configurable(db_path):
    buckets = {**DEFAULT_BUCKETS, "raw": "landing"}
    with PipelineStore(db_path, buckets=buckets) as store:
        assert store.current().bucket == "landing"
        assert active_pipeline(store.db.connection(), store.buckets) == ("raw", "landing")
        assert store.set("filtered", updated_by="ops").change.bucket == "enriched"


def test_the_sqlite_store_implements_the_backend_interface(store):
    from webapp.core.backend import ChangeStore

    assert isinstance(store, ChangeStore)
    members = {name for name in dir(ChangeStore) if not name.startswith("_")}
    assert members <= set(dir(store))
