"""On a table another tool made, without our indexes, anonymous reads do bounded work (issue
15.6): the work of each read (SQLite virtual-machine steps, counted by a progress handler: the
same on any machine, not a time) does not grow with the table, and the page and /readyz say how
to add the indexes."""

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from webapp.core.migrate import migrate
from webapp.core.queries import SCAN_BOUND
from webapp.core.schema import SCHEMA
from webapp.core.store import PipelineStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def foreign_table(path, rows):
    """Our columns, no indexes: rows of op0..op4, and one 'rare' operator in the first row."""
    conn = sqlite3.connect(path)
    conn.execute(SCHEMA)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by) VALUES (?, ?, ?)",
        (
            (
                ("filtered", "aggregated")[i % 2],
                (START + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"),
                "rare" if i == 0 else f"op{i % 5}",
            )
            for i in range(rows)
        ),
    )
    conn.commit()
    conn.close()
    return path


READS = {
    "operators": lambda store: store.operators(),
    "page by a missing operator": lambda store: store.page(25, updated_by="nobody"),
    "page by a rare type": lambda store: store.page(25, pipeline_type="raw"),
    "page since": lambda store: store.page(25, since=START + timedelta(days=1)),
    "count by operator": lambda store: store.count(1000, updated_by="nobody"),
    "active at": lambda store: store.active_at(START + timedelta(days=2)),
    "window": lambda store: store.window(START + timedelta(days=3), 200),
}


def work(store, read) -> int:
    """SQLite VM steps (in thousands) that ``read(store)`` costs on the store's connection."""
    conn = store.db.connection()
    steps = [0]

    def tick():
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 1000)
    try:
        read(store)
    finally:
        conn.set_progress_handler(None, 0)
    return steps[0]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Two foreign tables, one three times the other (both above the bound)."""
    folder = tmp_path_factory.mktemp("bounded")
    small = foreign_table(folder / "small.db", SCAN_BOUND + 2_000)
    large = foreign_table(folder / "large.db", 3 * (SCAN_BOUND + 2_000))
    return small, large


@pytest.mark.parametrize("read", sorted(READS))
def test_the_work_of_a_read_does_not_grow_with_an_unindexed_table(read, tables):
    small, large = tables
    with PipelineStore(small) as a, PipelineStore(large) as b:
        assert a.scan_floor() is not None  # bounded: no index
        small_work, large_work = work(a, READS[read]), work(b, READS[read])
    assert large_work <= small_work * 1.2 + 2, (small_work, large_work)


def test_bounded_reads_say_what_they_cover_and_migrate_lifts_the_bound(tmp_path):
    path = foreign_table(tmp_path / "t.db", SCAN_BOUND + 500)
    with PipelineStore(path) as store:
        assert store.operators() == ["op0", "op1", "op2", "op3", "op4"]  # 'rare' is too old
        assert store.page(25, updated_by="rare").changes == []
        assert not store.indexed() and store.status()["indexed"] is False
        # Exports are not bounded: they walk the ids once and find every row.
        assert [row["id"] for row in store.iter_rows(updated_by="rare")] == [1]
        assert [row["id"] for row in store.iter_rows(since=START)][-1] == 1
        # The change in force long ago is found below the bound.
        assert store.active_at(START + timedelta(seconds=30)).id == 1
    migrate(path)
    with PipelineStore(path) as store:
        assert store.scan_floor() is None and store.indexed()
        assert store.operators()[-1] == "rare"
        assert [change.id for change in store.page(25, updated_by="rare").changes] == [1]


def test_the_page_and_readyz_name_the_command_that_adds_the_indexes(tmp_path, monkeypatch):
    from webapp import create_app

    path = foreign_table(tmp_path / "sensor_data.db", SCAN_BOUND + 10)
    app = create_app({"TESTING": True, "DB": str(path), "SECRET_KEY": "x" * 40})
    client = app.test_client()
    page = client.get("/history?operator=op1").get_data(as_text=True)
    command = f"pipeline-manager --db {path} migrate"
    assert "scan-bound" in page and command in page and "newest 10,000 changes" in page
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and command in ready["indexes"]
    migrate(path)
    assert "scan-bound" not in client.get("/history?operator=op1").get_data(as_text=True)
    assert client.get("/readyz").get_json()["indexes"] == "present"
