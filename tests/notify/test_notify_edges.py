"""The notifier with rows at the edge of the calendar (issue 15.1), and what it writes to its
log from stored text and receivers (issue 15.13): real processes, a real receiver."""

import sqlite3

import pytest
from hooklib import Notifier, Receiver

from webapp.core.store import PipelineStore

EDGE = "0001-01-01T00:00:00+01:00"


def insert(db_path, pipeline_type, stamp, updated_by="tool"):
    conn = sqlite3.connect(db_path)
    with conn:
        cursor = conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
            "VALUES (?, ?, ?, NULL)",
            (pipeline_type, stamp, updated_by),
        )
    conn.close()
    return cursor.lastrowid


@pytest.mark.slow
def test_edge_rows_are_posted_and_a_restarted_notifier_starts(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    insert(db_path, "filtered", EDGE)  # the newest row when the notifier starts
    state = tmp_path / "state.json"
    with Receiver() as receiver:
        args = ("--webhook", receiver.url, "--state", state, "--interval", "0.05")
        notifier = again = Notifier(db_path, *args)
        try:
            notifier.wait_started()
            change = insert(db_path, "aggregated", "9999-12-31T23:59:59-01:00")
            (post,) = receiver.acknowledged_until(change)
            assert post.record["updated_at"] == "9999-12-31T23:59:59-01:00"
            assert "at 9999-12-31T23:59:59-01:00 (unknown time)." in post.record["text"]
            assert post.record["previous"] == "filtered"  # the row before (no metadata)
            assert notifier.stop() == 0
            again = Notifier(db_path, *args)  # before issue 15: dead at start, for good
            again.wait_started()
            later = insert(db_path, "raw", "9999-12-31 23:59:59.999")
            assert [p.change_id for p in receiver.acknowledged_until(later)] == [later]
            assert again.stop() == 0
        finally:
            notifier.kill()
            again.kill()
