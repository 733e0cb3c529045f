"""The rules of a change (webapp/changes.py): decisions, time stamps, metadata from any tool."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.core.changes import (
    MAX_METADATA_DEPTH,
    Change,
    default_change,
    must_insert,
    new_metadata,
    next_timestamp,
    parse_metadata,
    request_change,
)
from webapp.core.errors import ConflictError, InvalidInput
from webapp.core.pipelines import DEFAULT_BUCKETS

NOW = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)


def change(id_, pipeline_type="filtered"):
    return Change(id_, pipeline_type, DEFAULT_BUCKETS.get(pipeline_type), NOW, "ops", {})


def test_the_clock_is_used_when_it_is_ahead_of_the_newest_row():
    assert next_timestamp(NOW, NOW - timedelta(seconds=1)) == NOW.replace(microsecond=123000)
    assert next_timestamp(NOW, None) == NOW.replace(microsecond=123000)


@pytest.mark.parametrize(
    "newest",
    [
        NOW.replace(microsecond=123000),  # the same millisecond
        NOW.replace(microsecond=123999),
        NOW + timedelta(hours=3),  # a clock that went back, or a row from the future
    ],
)
def test_a_tie_or_a_later_row_moves_the_stamp_one_millisecond_past_it(newest):
    stamp = next_timestamp(NOW, newest)
    assert stamp > newest
    assert stamp - newest <= timedelta(milliseconds=1)
    assert stamp.microsecond % 1000 == 0


@given(
    clock=st.datetimes(timezones=st.just(UTC)),
    newest=st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_the_stamp_is_always_strictly_after_the_newest_and_never_before_the_clock(clock, newest):
    if newest is not None and newest.year == 9999:
        newest = newest.replace(year=9998)
    stamp = next_timestamp(clock, newest)
    assert stamp >= clock.replace(microsecond=clock.microsecond // 1000 * 1000)
    if newest is not None:
        assert stamp > newest


def test_metadata_records_the_clock_only_when_the_stamp_moved():
    request = request_change("raw", updated_by="ops", reason="why")
    current = change(3)
    exact = NOW.replace(microsecond=123000)
    assert "clock" not in new_metadata(request, current, NOW, exact)
    moved = new_metadata(request, current, NOW, exact + timedelta(seconds=5))
    assert moved["clock"] == "2026-11-27T10:00:00.123Z"
    assert moved["previous"] == "filtered" and moved["previous_id"] == 3


def test_conflict_is_checked_before_the_no_op():
    current = change(2, "aggregated")
    with pytest.raises(ConflictError, match="it is now aggregated"):
        must_insert(request_change("aggregated", updated_by="x", expect_id=1), current)
    assert must_insert(request_change("aggregated", updated_by="x", expect_id=2), current) is False
    assert must_insert(request_change("raw", updated_by="x"), current) is True
    assert must_insert(request_change("raw", updated_by="x"), default_change(DEFAULT_BUCKETS))


@pytest.mark.parametrize("bad", [True, -1, "3", 1.0, 2**70 * -1])
def test_expect_id_must_be_a_whole_number(bad):
    with pytest.raises(InvalidInput, match="whole number"):
        request_change("raw", updated_by="x", expect_id=bad)


def test_an_unmanaged_type_says_so():
    foreign = Change(7, "emergency", None, NOW, "c-tool", {})
    assert not foreign.managed and foreign.bucket is None
    assert foreign.type_label == "'emergency' (not a type this tool manages)"
    assert Change(8, None, None, None, None, {}).type_label.startswith("(none)")
    record = foreign.to_dict()
    assert record["managed"] is False and record["bucket"] is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, {}),
        ("", {}),
        ('{"reason": "ok"}', {"reason": "ok"}),
        ("not json", {"unparsed": "not json"}),
        ('{"x": NaN}', {"unparsed": '{"x": NaN}'}),
        ('{"x": Infinity}', {"unparsed": '{"x": Infinity}'}),
        ('{"x": 1e999}', {"unparsed": '{"x": 1e999}'}),
        ("[1, 2]", {"value": [1, 2]}),
        ("42", {"value": 42}),
        ("9" * 5000, {"unparsed": "9" * 5000}),
        ('{"x": "\\ud800"}', {"unparsed": '{"x": "\\ud800"}'}),
        (b"\xff\xfe", {"unparsed": "\ufffd\ufffd"}),
    ],
)
def test_metadata_from_any_tool_becomes_a_strict_json_object(text, expected):
    assert parse_metadata(text) == expected


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 5000, 200_000])
def test_deeply_nested_metadata_is_kept_as_text(depth):
    text = "[" * depth + "]" * depth
    assert parse_metadata(text) == {"unparsed": text}
    nested = '{"a":' * depth + "1" + "}" * depth
    assert parse_metadata(nested) == {"unparsed": nested}


@given(st.text(max_size=200))
def test_any_metadata_text_gives_strict_utf8_json(text):
    value = parse_metadata(text)
    assert isinstance(value, dict)
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
