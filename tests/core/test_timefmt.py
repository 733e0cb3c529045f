"""Time stamps at the edge of the calendar (issue 15.1, 15.2, 15.14): every stored value reads.

``timefmt.parse`` is total: any value a row can hold is a UTC time or None (shown as the stored
text with *unknown time*), never an exception; a change after the calendar's last millisecond is
still written.
"""

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rowlib import insert_row, stamp_strings

from webapp.core import export, timefmt
from webapp.core.changes import next_timestamp, stamp_text
from webapp.core.store import PipelineStore


def unix_numbers():
    return st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))


EDGES = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: OverflowError before issue 15
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "0000-01-01 00:00:00",
    "10000-01-01 00:00:00",
    "2026-06-30T23:59:60Z",  # a leap second
    "2026-01-01T24:00:00",
    "2026-01-01T10:00:00.12345678901234567890Z",
    "9999-12-31 23:59:59.999",
    10**40,
    -(10**40),
    float("inf"),
    float("nan"),
    b"\xff2026",
]


def assert_readable(value):
    moment = timefmt.parse(value)
    assert moment is None or moment.tzinfo is UTC
    line = timefmt.shown(moment, None if moment else str(value))
    assert line == timefmt.iso(moment) if moment else line.endswith("(unknown time)")
    timefmt.ago(moment)
    timefmt.utc(moment)
    record = stamp_text(value)
    assert record is None or isinstance(record, str)
    clock = datetime.now(UTC)
    stamp = next_timestamp(clock, moment)
    timefmt.stored(stamp)
    assert stamp >= min(clock.replace(microsecond=clock.microsecond // 1000 * 1000), timefmt.LAST)


@pytest.mark.parametrize("value", EDGES)
def test_edge_values_read_as_a_time_or_as_unknown(value):
    assert_readable(value)


@given(stamp_strings())
@example("0001-01-01T00:00:00+01:00")
@example("9999-12-31T23:59:59.9999999-23:59")
def test_any_stamp_text_reads_without_an_exception(text):
    assert_readable(text)


@given(unix_numbers())
def test_any_unix_number_reads_without_an_exception(value):
    assert_readable(value)


def test_a_time_utc_cannot_hold_is_shown_as_stored_with_unknown_time():
    assert timefmt.parse("0001-01-01T00:00:00+01:00") is None
    assert timefmt.shown(None, "0001-01-01T00:00:00+01:00") == (
        "0001-01-01T00:00:00+01:00 (unknown time)"
    )
    assert timefmt.shown(None, None) == "no time recorded (unknown time)"
    # Representable ones are moved to UTC as before.
    assert timefmt.parse("0001-01-01T00:00:00-01:00") == datetime(1, 1, 1, 1, tzinfo=UTC)


def test_after_the_last_millisecond_the_stamp_is_shared_not_overflowed():
    last = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert next_timestamp(datetime.now(UTC), last) == last == timefmt.LAST
    almost = last - timedelta(milliseconds=1)
    assert next_timestamp(datetime.now(UTC), almost) == last
    assert next_timestamp(datetime.now(UTC), datetime.max.replace(tzinfo=UTC)) == last


def test_a_change_after_a_row_at_the_last_millisecond_is_written(store, db_path):
    store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", "9999-12-31 23:59:59.999")
    result = store.set("aggregated", updated_by="ops", reason="after the end of time")
    assert result.changed
    assert result.change.updated_at_text == "9999-12-31 23:59:59.999"
    assert "clock" in result.change.metadata  # the real time is kept beside the shared stamp
    assert store.current().id == result.change.id
    conn = sqlite3.connect(db_path)
    newest = conn.execute(
        "SELECT id FROM pipeline_config ORDER BY updated_at DESC, id DESC LIMIT 1"
    ).fetchone()[0]
    conn.close()
    assert newest == result.change.id  # readers by time (ties by id) agree with readers by id


def test_an_integer_stamp_is_read_the_same_by_records_and_exports(store, db_path):
    """Issue 15.14: a number is Unix seconds on every path (API, CLI, exports)."""
    store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", 1764800000)
    expected = "2025-12-03T22:13:20.000Z"
    assert store.current().to_dict()["updated_at"] == expected
    assert store.history(1)[0].to_dict()["updated_at"] == expected
    exported = json.loads("".join(export.json_chunks(store.iter_rows(), store.buckets)))
    assert exported[0]["updated_at"] == expected
    rows = "".join(export.csv_chunks(store.iter_rows(), store.buckets)).splitlines()
    assert f",{expected}," in rows[1]


DATABASES = itertools.count()
STORE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@STORE_SETTINGS
@given(
    st.one_of(
        stamp_strings(),
        st.integers(-(2**63), 2**63 - 1),  # what an SQLite INTEGER holds
        st.floats(allow_nan=False),  # SQLite stores NaN as NULL
    )
)
def test_any_stored_stamp_reads_on_every_store_path_and_a_change_follows(tmp_path, value):
    path = tmp_path / f"edge-{next(DATABASES)}.db"
    with PipelineStore(path, create=True) as store:
        store.initialize()
        insert_row(path, "filtered", value)
        current = store.current()
        json.dumps(current.to_dict(), allow_nan=False)
        "".join(export.csv_chunks(store.iter_rows(), store.buckets))
        json.loads("".join(export.json_chunks(store.iter_rows(), store.buckets)))
        store.active_at(datetime.now(UTC))
        assert store.set("raw", updated_by="ops", reason="after it").changed


def test_an_offset_the_calendar_cannot_hold_in_utc_reads_as_unknown_on_export(store, db_path):
    store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", "0001-01-01T00:00:00+01:00")
    change = store.current()
    assert change.updated_at is None
    assert change.to_dict()["updated_at"] == "0001-01-01T00:00:00+01:00"
    exported = json.loads("".join(export.json_chunks(store.iter_rows(), store.buckets)))
    assert exported[0]["updated_at"] == "0001-01-01T00:00:00+01:00"
