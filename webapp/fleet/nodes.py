"""What the centre knows of a node, as the store returns it and the API shows it. No SQL, no Flask.

A node's ``state`` is computed from stored times when it is read: ``stale`` once its deadline
(last report + 3 × the interval it was asked for) has passed, else ``error`` when its last report
carried one, else ``reporting``. Stale wins over error.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.timefmt import iso

from .rollouts.tables import SYNC_OF_STATUS


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def state_at(row, now_ms: int) -> str:
    """Return the node's state at ``now_ms`` from its stored row."""
    if row.stale_at_ms <= now_ms:
        return "stale"
    return "error" if row.error else "reporting"


def is_managed(pipeline_type: str | None) -> bool:
    """Return True for a type this tool manages (a node that ran none yet counts as managed)."""
    return pipeline_type is None or pipeline_type in PIPELINE_TYPES


@dataclass(frozen=True)
class FleetNode:
    """One node: its labels, its newest report and its state now.

    ``current`` is the record (or ``{"error": ...}``) exactly as the node reported it;
    ``pipeline_type`` is the newest type it reported (kept while it reports errors);
    ``since`` is when that pipeline was set (the record's ``updated_at``), ``updated_by`` and
    ``reason`` who set it and why. ``epoch`` counts restores; ``change_id`` is the node's change
    id as last reported (issue 18's ``expect_id``).
    """

    name: str
    labels: dict
    state: str
    pipeline_type: str | None
    managed: bool
    last_report_at: datetime
    interval_s: int
    agent: str | None
    current: dict
    epoch: int
    change_id: int
    sync: str | None = None  # issue 18: in_sync | pending | drifted | conflict

    @classmethod
    def from_row(cls, row, now_ms: int) -> "FleetNode":
        return cls(
            name=row.name,
            labels=json.loads(row.labels),
            state=state_at(row, now_ms),
            pipeline_type=row.pipeline_type,
            managed=is_managed(row.pipeline_type),
            last_report_at=from_ms(row.last_report_ms),
            interval_s=row.interval_s,
            agent=row.agent,
            current=json.loads(row.current),
            epoch=row.epoch,
            change_id=row.change_id,
            sync=SYNC_OF_STATUS.get(row._mapping.get("rollout_status")),
        )

    @property
    def record(self) -> dict:
        """The current record, or {} while the node reports an error."""
        return {} if "error" in self.current else self.current

    @property
    def since(self) -> str | None:
        return self.record.get("updated_at")

    @property
    def updated_by(self) -> str | None:
        return self.record.get("updated_by")

    @property
    def reason(self) -> str | None:
        metadata = self.record.get("metadata")
        return metadata.get("reason") if isinstance(metadata, dict) else None

    @property
    def bucket(self) -> str | None:
        return self.record.get("bucket")

    @property
    def error(self) -> dict | None:
        """The error the node reported last ({"code", "message"}), or None."""
        error = self.current.get("error")
        return error if isinstance(error, dict) else None

    def to_dict(self) -> dict:
        """The API's node object."""
        return {
            "node": self.name,
            "labels": self.labels,
            "state": self.state,
            "sync": self.sync,
            "pipeline_type": self.pipeline_type,
            "managed": self.managed,
            "last_report_at": iso(self.last_report_at),
            "interval_s": self.interval_s,
            "agent": self.agent,
            "epoch": self.epoch,
            "current": self.current,
        }


@dataclass(frozen=True)
class ReportedChange:
    """One of a node's change rows as it reported it (``record``: the ``get --json`` keys)."""

    epoch: int
    id: int
    record: dict
    received_at: datetime

    @property
    def cursor(self) -> str:
        return f"{self.epoch}.{self.id}"

    def to_dict(self) -> dict:
        return {**self.record, "epoch": self.epoch, "received_at": iso(self.received_at)}


@dataclass(frozen=True)
class NodeEvent:
    """Something that happened to a node besides a change: ``kind`` "restore" (detail: from_id,
    to_id, epoch)."""

    at: datetime
    kind: str
    detail: dict

    def to_dict(self) -> dict:
        return {"at": iso(self.at), "kind": self.kind, **self.detail}


@dataclass(frozen=True)
class DayMix:
    """How many nodes ran each type on one UTC day (a node that changed counts for both)."""

    day: date
    by_type: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NodePage:
    """One keyset page of nodes in name order; ``next_cursor`` is None on the last page."""

    nodes: list
    next_cursor: str | None
