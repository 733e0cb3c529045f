"""A node's records as the centre holds them, read back as the node's own :class:`Change`, so the
node page shows them with the node dashboard's partials and draws them with its timeline. No Flask.

Records come from a node's report (checked at ingest, still another machine's words): a field of
an unexpected JSON type reads as missing, never as an error, and a time that is not one keeps its
text, as the node's own dashboard shows a row another tool wrote.
"""

from datetime import datetime

from webapp.core import timefmt
from webapp.core.changes import Change
from webapp.core.pipelines import DEFAULT_PIPELINE
from webapp.core.timeline import timelines


def change_from_record(record) -> Change:
    """Return the :class:`Change` a JSON record describes (``Change.to_dict``'s inverse)."""
    if not isinstance(record, dict):
        record = {}
    raw_id = record.get("id")
    change_id = raw_id if type(raw_id) is int and not record.get("default") else None
    stamp = _text(record, "updated_at")
    moment = timefmt.parse(stamp)
    metadata = record.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {} if metadata is None else {"value": metadata}
    return Change(
        id=change_id,
        pipeline_type=_text(record, "pipeline_type"),
        bucket=_text(record, "bucket"),
        updated_at=moment,
        updated_by=_text(record, "updated_by"),
        metadata=metadata,
        # The stored form, as the node's own store reads it: the timeline compares it as text.
        updated_at_text=timefmt.stored(moment) if moment else stamp,
    )


def _text(record: dict, key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


class ReportedHistory:
    """The two reads the timeline asks of a store, answered from a node's reported changes.

    ``changes`` are the newest ones the centre holds, newest first (one epoch: after a restore,
    the restored database's). When they reach back past a window's start, or fill more than the
    timeline draws, the answer is exact; when they are all the node ever reported, what was in
    force before the first is the never-set default.
    """

    def __init__(self, changes: list[Change]):
        self.changes = changes

    def active_at(self, moment: datetime) -> Change:
        bound = timefmt.bound(moment)
        before = [c for c in self.changes if c.updated_at and c.updated_at_text <= bound]
        if not before:
            return Change(None, DEFAULT_PIPELINE, None, None, None, {})
        # As the node's store answers: the latest by time, then by id.
        return max(before, key=lambda change: (change.updated_at_text, change.id or 0))

    def window(self, start: datetime, limit: int) -> list[Change]:
        bound = timefmt.bound(start)
        return [c for c in self.changes if (c.updated_at_text or "") >= bound][:limit]


def node_timelines(changes: list[Change], current: Change, now: datetime):
    """Return the node's 24-hour and 7-day timelines from its reported changes."""
    return timelines(ReportedHistory(changes), now, current)
