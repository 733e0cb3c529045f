"""``migrate`` (issue 16.2) on tables made by each of the original tool's shapes, through both
entrances: the result every reader agrees on, the old table kept, stamps in our format, a second
run with nothing to do, refusals that change nothing, and a kill -9 mid-migration."""

import json
import re
import sqlite3

import pytest
from original_shapes import history_rows, make_shape, stamp, table_dump

from webapp.core.store import PipelineStore
from webapp.uploader import active_pipeline, connect_uploader

CANONICAL = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")

# case -> (shape, rows, the table it is kept as, the type current after migration, row count)
MIGRATABLE = {
    "is-active": (
        "is-active",
        history_rows("raw", "aggregated", "filtered", active=1),
        "pipeline_config_is_active",
        "aggregated",
    ),
    "is-active-several-active": (
        "is-active",
        [("raw", stamp(0), "a", 1), ("filtered", stamp(1), "b", 1), ("raw", stamp(2), "c", 0)],
        "pipeline_config_is_active",
        "filtered",  # the newest of the rows marked active
    ),
    "single-row": (
        "single-row",
        [("filtered", "2026-11-20T10:00:00+01:00", "ops", '{"window": 60}', 1)],
        "pipeline_config_single_row",
        "filtered",
    ),
    "seed-first-check": (
        "seed-first-check",
        [("raw", stamp(0), "a"), ("aggregated", stamp(1), "b")],
        "pipeline_config_first_check",
        "aggregated",
    ),
}


def migrate(cli):
    return cli("migrate")


@pytest.mark.parametrize("case", sorted(MIGRATABLE))
def test_migrate_makes_every_original_shape_this_tools_table(case, cli, db_path):
    shape, rows, kept, current = MIGRATABLE[case]
    make_shape(db_path, shape, rows)
    before = table_dump(db_path)
    result = migrate(cli)
    assert result.exit_code == 0, result.output
    assert f"kept as {kept}" in result.output and f"current pipeline: {current}" in result.output
    # The old table is kept as it was, under its new name.
    assert table_dump(db_path, kept)[1] == before[1]
    # Every reader agrees on the current pipeline: get, the store, the uploader function.
    record = json.loads(cli("get", "--json").output)
    assert record["pipeline_type"] == current
    if shape != "seed-first-check":  # our columns: ids and metadata are kept as they were
        assert record["metadata"]["source"] == "migrate"
    conn = connect_uploader(db_path)
    assert active_pipeline(conn).pipeline_type == current
    conn.close()
    with PipelineStore(db_path) as store:
        changes = store.history(100)
        assert len(changes) == len(rows)
        stamps = [change.updated_at_text for change in changes]
        assert all(CANONICAL.fullmatch(text) for text in stamps), stamps
        # Newest by id is also newest by updated_at, as the original's readers order.
        assert stamps[0] == max(stamps)
        # Our next change is the newest by both orders, too.
        store.set("schematized", updated_by="ops", reason="after migration")
        by_time = sqlite3.connect(db_path).execute(
            "SELECT pipeline_type FROM pipeline_config ORDER BY updated_at DESC LIMIT 1"
        )
        assert by_time.fetchall() == [("schematized",)]
    again = migrate(cli)
    assert again.exit_code == 0 and "nothing to migrate" in again.output, again.output


def test_single_row_config_json_is_kept_in_the_metadata(cli, db_path):
    make_shape(db_path, "single-row", [("filtered", stamp(1), "ops", '{"window": 60}', 1)])
    assert migrate(cli).exit_code == 0
    with PipelineStore(db_path) as store:
        origin = store.current().metadata["migrated_from"]
    assert origin["config"] == {"window": 60} and origin["updated_at"] == stamp(1)
    assert origin["table"] == "pipeline_config_single_row" and origin["is_active"] == 1


def test_iso_stamps_sort_with_ours_after_migration(cli, db_path):
    """The README script's bug: '2026-11-20T10:00:00+00:00' sorted after every stamp we write."""
    make_shape(db_path, "is-active", [("aggregated", "2026-11-20T23:00:00+00:00", "a", 1)])
    assert migrate(cli).exit_code == 0
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT updated_at FROM pipeline_config").fetchall() == [
        ("2026-11-20 23:00:00.000",)
    ]
    conn.close()


def test_migrate_rewrites_foreign_stamps_in_our_own_table_and_adds_indexes(cli, db_path):
    make_shape(db_path, "seed", [("raw", stamp(0), "a"), ("filtered", stamp(1), "b")])
    result = migrate(cli)
    assert result.exit_code == 0, result.output
    assert "rewrote 2 time stamps" in result.output and "added indexes" in result.output
    assert "kept as" not in result.output  # our own table: nothing renamed
    sql, rows, tables = table_dump(db_path)
    assert [row[2] for row in rows] == ["2026-11-20 09:00:00.000", "2026-11-20 10:00:00.000"]
    assert tables == ["pipeline_config", "sensor_readings", "sqlite_sequence"]
    assert "nothing to migrate" in migrate(cli).output


def test_no_table_is_nothing_to_migrate_and_creates_nothing(cli, db_path):
    before = db_path.read_bytes()
    result = migrate(cli)
    assert result.exit_code == 0 and "nothing to migrate" in result.output
    assert db_path.read_bytes() == before


# case -> (shape, rows, exit code, fragment of the one Error: line)
REFUSED = {
    "type-outside-check": (
        "is-active",
        history_rows("raw", "emergency", "aggregated", "regional", active=2),
        2,
        "rows #2 ('emergency'), #4 ('regional') name types the new table refuses",
    ),
    "first-check-emergency": (
        "seed-first-check",
        [("aggregated", stamp(0), "a"), ("emergency", stamp(1), "b")],
        2,
        "rows #2 ('emergency') name types",
    ),
    "single-row-inactive": (
        "single-row",
        [("aggregated", stamp(0), "a", "{}", 0)],
        2,
        "are all inactive (is_active = 0): no configuration is active",
    ),
    "no-active-row": (
        "is-active",
        [("raw", stamp(0), "a", 0), ("filtered", stamp(1), "b", 0)],
        2,
        "rows #1 ('raw'), #2 ('filtered') are all inactive",
    ),
    "null-stamp": ("is-active", [("raw", None, "a", 1)], 2, "rows #1 ('raw') have no created_at"),
    "unknown-shape": ("extra-column", [("raw", stamp(0), "a")], 5, "another tool's columns"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_migration_changes_nothing(case, cli, db_path):
    shape, rows, code, fragment = REFUSED[case]
    make_shape(db_path, shape, rows)
    before = db_path.read_bytes()
    result = migrate(cli)
    assert result.exit_code == code, result.output
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert db_path.read_bytes() == before  # not even the journal mode changed
    assert not db_path.with_name(db_path.name + "-wal").exists()


def test_migrate_help_has_an_example(cli):
    result = cli("migrate", "--help")
    assert result.exit_code == 0
    assert "pipeline-manager --db /data/sensor_data.db migrate" in result.output


def test_migrate_never_guesses_a_database(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from webapp.cli.pipeline import main

    monkeypatch.delenv("PIPELINE_DB", raising=False)
    result = CliRunner().invoke(main, ["migrate"], env={"PIPELINE_DB": ""})
    assert result.exit_code == 2 and "no database named" in result.output


# -- kill -9 mid-migration ------------------------------------------------------------------------


def big_history(db_path, count):
    make_shape(db_path, "is-active")
    conn = sqlite3.connect(db_path)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, created_at, created_by, is_active) "
        "VALUES (?, ?, ?, ?)",
        (
            (("raw", "filtered")[i % 2], f"2026-11-{1 + i % 28:02d}T10:00:00+00:00", "op", 0)
            for i in range(count)
        ),
    )
    conn.execute("UPDATE pipeline_config SET is_active = 1 WHERE id = ?", (count // 2,))
    conn.commit()
    conn.close()


def lock_is_held(db_path) -> bool:
    """True while another process holds the write lock (our probe takes it for no time)."""
    conn = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error) or "busy" in str(error), error
        return True
    finally:
        conn.close()


def state_of(db_path, before):
    """Return "intact" (the old table as it was, nothing else) or "complete" (ours made from
    it, the old one kept); anything else fails the test."""
    sql, rows, tables = table_dump(db_path)
    if "is_active" in sql[0][0]:
        assert rows == before[1] and "pipeline_config_is_active" not in tables
        return "intact"
    assert table_dump(db_path, "pipeline_config_is_active")[1] == before[1]
    assert len(rows) == len(before[1])
    with PipelineStore(db_path) as store:
        assert store.current().pipeline_type == "filtered"  # the active row, id count // 2
    return "complete"


@pytest.mark.slow
def test_kill_9_mid_migration_leaves_the_old_table_or_the_whole_migration(tmp_path):
    """A real ``pipeline-manager migrate`` is killed while it holds the write lock, at several
    points; each time the file holds the old table intact or the migration complete."""
    import time

    from conftest import make_sensor_db
    from workers import run_cli, start_cli

    outcomes = []
    for attempt, delay in enumerate((0.0, 0.1, 0.3, 0.6)):
        db_path = make_sensor_db(tmp_path / f"sensor-{attempt}.db")
        big_history(db_path, 60_000)
        before = table_dump(db_path)
        process = start_cli("--db", db_path, "migrate", entrance="pipeline-manager")
        while process.poll() is None and not lock_is_held(db_path):
            pass  # busy-wait on the event itself: the migration's transaction has begun
        time.sleep(delay)  # not waiting for an event: a different kill point each attempt
        process.kill()
        process.communicate()
        outcomes.append(state_of(db_path, before))
        if outcomes[-1] == "intact":  # the interrupted migration runs again to the end
            result = run_cli("--db", db_path, "migrate", entrance="pipeline-manager")
            assert result.returncode == 0, result.stderr
            assert state_of(db_path, before) == "complete"
    assert "intact" in outcomes, outcomes  # at least one kill landed mid-transaction


# -- hostile stamps ------------------------------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from webapp.core.migrate import canonical_stamp  # noqa: E402

STAMP_TEXT = st.from_regex(
    r"\A-?\d{1,5}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,12})?)?(Z|[+-]\d{2}:?\d{2})?\Z"
)


@given(
    st.one_of(
        STAMP_TEXT,
        st.text(),
        st.binary(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.none(),
    )
)
def test_a_stamp_is_ours_or_kept_never_an_error(value):
    result = canonical_stamp(value)
    assert result is None or CANONICAL.fullmatch(result)


@pytest.mark.parametrize(
    "stored",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00", "yesterday", 2**62, b"\xff"],
)
def test_a_stamp_that_cannot_be_written_our_way_is_kept_as_stored(stored, cli, db_path):
    make_shape(db_path, "is-active", [("raw", stored, "a", 1)])
    result = migrate(cli)
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(db_path)
    conn.text_factory = bytes
    (kept,) = conn.execute("SELECT updated_at FROM pipeline_config").fetchall()[0]
    conn.close()
    expected = stored if isinstance(stored, bytes | int) else stored.encode()
    assert kept == expected


def test_blobs_and_odd_values_in_the_single_row_table_migrate(cli, db_path):
    make_shape(db_path, "single-row", [("raw", b"\x00\xff", "a", b"\xfe", 1)])
    assert migrate(cli).exit_code == 0
    with PipelineStore(db_path) as store:
        origin = store.current().metadata["migrated_from"]
    assert origin["updated_at"] == "x'00FF'" and origin["config"] == "x'FE'"
