"""The glance's drawings (webapp/fleet/mix.py) and a node's records read back as changes
(webapp/fleet/records.py): geometry that fits, and a timeline equal to the node's own."""

import sqlite3
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from webapp.core.timeline import timelines
from webapp.fleet.mix import HEIGHT, MIN_HEIGHT, day_mix, type_bars
from webapp.fleet.records import change_from_record, node_timelines

counts = st.dictionaries(
    st.sampled_from(["raw", "schematized", "filtered", "aggregated", "legacy", ""]),
    st.integers(0, 100_000),
    max_size=6,
)


@given(counts)
def test_type_bars_fit_their_track_and_fold_unknown_types_into_other(by_type):
    bars = type_bars(by_type)
    assert [bar.kind for bar in bars][:4] == ["raw", "schematized", "filtered", "aggregated"]
    other = by_type.get("legacy", 0) + by_type.get("", 0)
    assert (bars[-1].kind == "other") == bool(other)
    assert sum(bar.count for bar in bars) == sum(by_type.values())
    for bar in bars:
        assert 0 <= bar.width <= 100
        assert (bar.width > 0) == (bar.count > 0)  # one node in a huge fleet still shows
        assert str(bar.count) in bar.title


def test_type_bars_name_the_buckets_most_used_first():
    bars = {bar.kind: bar for bar in type_bars({"raw": 3}, {"raw": ["ingestion", "old-bucket"]})}
    assert bars["raw"].buckets == ["ingestion", "old-bucket"]
    assert bars["raw"].title == "raw: 3 nodes (100 %), bucket ingestion, old-bucket"
    assert bars["filtered"].title == "filtered: 0 nodes (0 %)"


@given(st.lists(counts, min_size=1, max_size=14))
def test_day_columns_stack_inside_the_drawing_and_keep_their_order(days):
    start = date(2026, 11, 27)
    mix = day_mix([(start + timedelta(days=n), by_type) for n, by_type in enumerate(days)])
    assert len(mix.columns) == len(days)
    assert mix.peak == max(sum(by_type.values()) for by_type in days)
    right = -1.0
    for column, by_type in zip(mix.columns, days, strict=True):
        assert column.x > right and column.x + column.width <= 100.0 + 1e-6
        right = column.x + column.width
        assert column.total == sum(by_type.values())
        assert sum(block.count for block in column.blocks) == column.total
        bottom = HEIGHT
        for block in column.blocks:
            assert block.height >= MIN_HEIGHT and block.count > 0
            assert abs(block.y + block.height - bottom) < 0.02  # stacked, no gap
            bottom = block.y
            assert column.label in block.title
        assert bottom >= -MIN_HEIGHT * len(column.blocks)  # small blocks may poke up a little
    assert not mix.columns[-1].minor  # today keeps its label on a phone


def test_an_empty_fleet_draws_empty_days():
    mix = day_mix([(date(2026, 12, n), {}) for n in range(1, 8)])
    assert mix.peak == 0 and all(not column.blocks for column in mix.columns)
    assert "no node reported" in mix.summary


def test_hostile_records_read_as_missing_fields_never_as_errors():
    for record in (None, [], "x", {"id": True}, {"id": "7", "metadata": [1]},
                   {"pipeline_type": 5, "updated_at": 12, "updated_by": {"a": 1}}):  # fmt: skip
        change = change_from_record(record)
        assert change.id is None and change.updated_at is None
    change = change_from_record({"id": 3, "updated_at": "not a time", "metadata": "text"})
    assert change.updated_at_text == "not a time" and change.metadata == {"value": "text"}


def test_a_node_timeline_from_its_records_equals_the_one_its_dashboard_draws(store, db_path):
    """The same history, read by the node's store and by the centre from its report."""
    now = datetime.now(UTC).replace(microsecond=0)
    conn = sqlite3.connect(db_path)  # rows another tool wrote, days back
    store.initialize()
    for days, pipeline_type in ((9, "filtered"), (5, "aggregated"), (2, None), (1, "raw")):
        # Off the windows' edges: a whole-second row exactly at a window's start compares
        # differently with and without its ".000", which a record does not keep.
        stamp = (now - timedelta(days=days, minutes=7)).strftime("%Y-%m-%d %H:%M:%S")
        if pipeline_type is None:
            pipeline_type, stamp = "schematized", "the day before yesterday"  # not a time
        conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata)"
            " VALUES (?, ?, 'tool', '{}')",
            (pipeline_type, stamp),
        )
    conn.commit()
    conn.close()
    for pipeline_type in ("schematized", "filtered"):
        store.set(pipeline_type, updated_by="alice", reason="now")
    records = [change.to_dict() for change in store.history(100)]  # as reported, newest first
    reported = [change_from_record(record) for record in records]
    own = timelines(store, now)
    seen = node_timelines(reported, change_from_record(store.current().to_dict()), now)
    for mine, theirs in zip(own, seen, strict=True):
        assert [(s.kind, s.x, s.width, s.change.id) for s in mine.segments] == [
            (s.kind, s.x, s.width, s.change.id) for s in theirs.segments
        ]
        assert mine.summary == theirs.summary
