"""``previous`` is what a row's metadata records, else the type of the row before it (by id),
else the default: the same on every path (issue 16.4) — store, exports, CLI, API, dashboard."""

import csv
import io
import json
import sqlite3

import pytest
from rowlib import insert_row
from weblib import basic

from webapp.core import export
from webapp.core.store import PipelineStore

LOOSE_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT, "
    "updated_at TIMESTAMP, updated_by TEXT, metadata TEXT)"
)


@pytest.fixture
def mixed_db(db_path):
    """#1 another tool's first row, #2 ours, #3 and #4 another tool's (no metadata), #5 with a
    recorded previous that differs from the row before (the record wins)."""
    conn = sqlite3.connect(db_path)
    conn.execute(LOOSE_TABLE)  # no CHECK: another tool's type fits
    conn.close()
    insert_row(db_path, "aggregated", "2026-11-20 10:00:00")
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="ours")
    insert_row(db_path, "raw", "2026-11-27 10:00:00", metadata="not json")
    insert_row(db_path, "emergency", "2026-11-27 10:00:01")
    insert_row(db_path, "raw", "2026-11-27 10:00:02", metadata='{"previous": "schematized"}')
    return db_path


EXPECTED = {1: None, 2: "aggregated", 3: "filtered", 4: "raw", 5: "schematized"}


def test_the_store_and_every_read_agree(mixed_db):
    with PipelineStore(mixed_db) as store:
        assert {c.id: c.previous for c in store.history(10)} == EXPECTED
        assert {c.id: c.previous for c in store.changes_after(0)} == EXPECTED
        assert {i: store.get(i).previous for i in EXPECTED} == EXPECTED
        assert store.current().to_dict()["previous"] == "schematized"
        filtered = store.history(10, pipeline_type="raw")  # the row before, not the page's
        assert {c.id: c.previous for c in filtered} == {3: "filtered", 5: "schematized"}
        exported = json.loads("".join(export.json_chunks(store.iter_rows(), store.buckets)))
        assert {r["id"]: r["previous"] for r in exported} == EXPECTED
        table = csv.DictReader(io.StringIO("".join(export.csv_chunks(store.iter_rows(), {}))))
        assert {int(r["id"]): r["previous"] or None for r in table} == EXPECTED
        assert [c.to_dict() for c in store.history(10)] == exported  # one record everywhere


def test_the_cli_and_the_api_say_the_same(cli, mixed_db, web_app):
    lines = cli("history").stdout.splitlines()[1:]
    shown = {line.split("  ")[1]: line.split("  ")[2] for line in lines}
    assert shown["#4"] == "raw → 'emergency' (not a type this tool manages)"
    assert shown["#3"] == "filtered → raw (ingestion)"
    assert shown["#1"] == "(default) → aggregated (aggregated)"
    records = web_app.test_client().get("/api/history", headers=basic()).get_json()["changes"]
    assert {r["id"]: r["previous"] for r in records} == EXPECTED
