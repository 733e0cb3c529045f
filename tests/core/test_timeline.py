"""Timeline geometry (webapp/core/timeline.py): bounded work, nothing drawn that cannot be seen."""

from datetime import UTC, datetime

from webapp.core.timeline import MAX_CHANGES, timelines


def test_changes_in_one_moment_draw_only_what_can_be_seen(store):
    types = ("filtered", "aggregated", "schematized", "raw")
    for n in range(30):  # an automated rollout: thirty changes within a second
        store.set(types[n % 4], updated_by="rollout", reason=str(n))
    _, day, week = timelines(store, datetime.now(UTC))
    for line in (day, week):
        drawn = [s.change.id for s in line.segments]
        assert drawn[-1] == store.current().id  # what the uploader applies now is on top
        assert len(drawn) <= 3  # the state before, maybe one overlapping, the current one
        assert "earlier changes too close together to draw (see History)" in line.summary
        assert all(s.x + s.width <= 100.0 + 1e-9 for s in line.segments)


def test_the_store_is_read_once_for_both_windows(store, monkeypatch):
    for n in range(MAX_CHANGES + 5):
        store.set(("filtered", "raw")[n % 2], updated_by="rollout", reason=str(n))
    reads = []
    original = store.window
    monkeypatch.setattr(store, "window", lambda *a: reads.append(a) or original(*a))
    _, day, week = timelines(store, datetime.now(UTC))
    assert len(reads) == 1
    assert day.clipped and week.clipped  # more changes than drawn: both windows say so
