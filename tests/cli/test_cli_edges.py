"""Rows stamped at the edge of the calendar through every ``pipeline`` command (issue 15.1,
15.2, 15.14), both entrances: a time that cannot be represented is the stored text with
*unknown time*, never a traceback; a change after the calendar's last millisecond is written."""

import json
import threading

import pytest
from rowlib import insert_row

from webapp.core.store import PipelineStore

EDGE = "0001-01-01T00:00:00+01:00"
LAST = "9999-12-31 23:59:59.999"


@pytest.fixture
def edge_db(db_path):
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", EDGE)
    return db_path


def test_reads_show_the_stored_text_with_unknown_time(cli, edge_db):
    result = cli("get")
    assert result.exit_code == 0, result.output
    assert f"set:      {EDGE} (unknown time) by tool" in result.stdout
    result = cli("history")
    assert result.exit_code == 0, result.output
    assert f"{EDGE} (unknown time)  #2  raw → filtered (enriched)  by tool" in result.stdout
    for args in (["get", "--json"], ["history", "--json"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert EDGE in json.dumps(json.loads(result.stdout))
    result = cli("history", "--format", "csv")
    assert result.exit_code == 0 and f",{EDGE}," in result.stdout


def test_a_set_after_a_row_at_the_last_millisecond_is_written(cli, edge_db):
    insert_row(edge_db, "aggregated", LAST)
    result = cli("set", "schematized", "--reason", "after the end of time", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["changed"] and record["updated_at"] == "9999-12-31T23:59:59.999Z"


def test_monitor_follows_rows_at_the_edge(cli, edge_db):
    stop = threading.Event()

    def keep_inserting():
        while not stop.wait(0.05):
            insert_row(edge_db, "aggregated", "9999-12-31T23:59:59-01:00")

    writer = threading.Thread(target=keep_inserting)
    writer.start()
    try:
        result = cli("monitor", "--interval", "0.05", "--count", "1")
    finally:
        stop.set()
        writer.join()
    assert result.exit_code == 0, result.output
    assert "9999-12-31T23:59:59-01:00 (unknown time)" in result.stdout
    assert "filtered → aggregated" in result.stdout  # previous: the row before (no metadata)


def test_an_integer_stamp_is_a_time_in_every_output(cli, edge_db):
    insert_row(edge_db, "aggregated", 1764800000)
    expected = "2025-12-03T22:13:20.000Z"
    assert json.loads(cli("get", "--json").stdout)["updated_at"] == expected
    assert json.loads(cli("history", "--json").stdout)[0]["updated_at"] == expected
    assert f",{expected}," in cli("history", "--format", "csv").stdout
    assert cli("history").stdout.splitlines()[1].startswith(expected)
