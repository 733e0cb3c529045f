"""Exports (webapp/export.py) and history pages: streamed, bounded, and safe in a spreadsheet."""

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from webapp.core.export import cell, csv_chunks, json_chunks
from webapp.core.store import PipelineStore


def fill(path, count, start=datetime(2026, 1, 1, tzinfo=UTC)):
    """Write ``count`` changes quickly, as years of automated rollouts would leave them."""
    with PipelineStore(path) as store:
        store.initialize()
    types = ("raw", "schematized", "filtered", "aggregated")
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
        "VALUES (?, ?, ?, ?)",
        (
            (
                types[n % 4],
                (start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S.000"),
                ("alice", "bob", "carol")[n % 3],
                json.dumps({"reason": f"rollout {n}", "source": "cli"}),
            )
            for n in range(count)
        ),
    )
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "value, shown",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tindent", "'\tindent"),
        ("\rreturn", "'\rreturn"),
        ("plain = fine", "plain = fine"),
        (None, ""),
        (7, "7"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(value, shown):
    assert cell(value) == shown


def test_json_export_keeps_the_exact_text(store):
    store.set("filtered", updated_by="=ops", reason="=1+1")
    records = json.loads("".join(json_chunks(store.iter_rows(), store.buckets)))
    assert records[0]["updated_by"] == "=ops" and records[0]["metadata"]["reason"] == "=1+1"


def test_a_large_export_streams_in_bounded_chunks(db_path):
    fill(db_path, 5000)
    with PipelineStore(db_path) as store:
        reads = []
        original = store.db.read

        def counting_read(sql, params=()):
            rows = original(sql, params)
            reads.append(len(rows))
            return rows

        store.db.read = counting_read
        chunks = csv_chunks(store.iter_rows(), store.buckets)
        first = next(chunks)  # the first bytes come before most rows are read
        assert first.startswith("id,pipeline_type") and len(reads) == 1
        body = first + "".join(chunks)
    assert max(reads) <= 500  # never more than one chunk of rows in memory
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [int(row["id"]) for row in rows] == list(range(5000, 0, -1))


def test_keyset_pages_walk_every_change_once_in_both_directions(db_path):
    fill(db_path, 103)
    with PipelineStore(db_path) as store:
        seen, page = [], store.page(25)
        assert page.newer is None
        while True:
            seen += [c.id for c in page.changes]
            if page.older is None:
                break
            page = store.page(25, before=page.older)
        assert seen == list(range(103, 0, -1))
        assert len(page.changes) == 3 and page.newer is not None
        back = []
        while page.newer is not None:
            page = store.page(25, after=page.newer)
            back = [c.id for c in page.changes] + back
        assert back == list(range(103, 3, -1))
        assert page.changes[0].id == 103


def test_keyset_pages_with_filters_and_edges(db_path):
    fill(db_path, 40)
    with PipelineStore(db_path) as store:
        page = store.page(5, pipeline_type="filtered")
        assert [c.id for c in page.changes] == [39, 35, 31, 27, 23]
        assert page.older == 23 and page.newer is None
        page = store.page(5, before=23, pipeline_type="filtered")
        assert [c.id for c in page.changes] == [19, 15, 11, 7, 3]
        assert page.older is None and page.newer == 19
        since = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
        page = store.page(4, since=since)
        assert [c.id for c in page.changes] == [40, 39, 38, 37]
        page = store.page(4, before=page.older, since=since)
        assert [c.id for c in page.changes] == [36, 35, 34, 33]
        assert store.page(4, before=1).changes == []  # past the oldest: empty, no error
        assert store.page(4, after=40).changes == []
        assert store.page(4, before=10**18).changes[0].id == 40
        assert store.count(upto=10) == 10 and store.count(upto=1000) == 40
