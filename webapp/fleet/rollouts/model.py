"""A rollout as the store returns it and the API and pages show it. No SQL, no Flask."""

import json
from dataclasses import dataclass, field

from webapp.core.timefmt import iso

from ..nodes import from_ms
from .tables import ACTIVE, APPROVED, AWAITING_APPROVAL, PAUSED, RUNNING

#: The actions an operator may take in each status (approve: also not the author's own).
ACTIONS_BY_STATUS = {
    AWAITING_APPROVAL: ("approve", "abort"),
    APPROVED: ("start", "abort"),
    RUNNING: ("pause", "abort"),
    PAUSED: ("resume", "abort"),
}
PROGRESS = ("taken", "pending", "waiting", "conflict", "error", "drifted", "skipped", "stale")


@dataclass(frozen=True)
class AuditRecord:
    at_ms: int
    actor: str
    action: str
    detail: dict

    def to_dict(self) -> dict:
        return {
            "at": iso(from_ms(self.at_ms)),
            "actor": self.actor,
            "action": self.action,
            **self.detail,
        }


@dataclass(frozen=True)
class Wave:
    """One wave: its number (1-based), size, and how many of its nodes are in each status."""

    number: int
    size: int
    counts: dict
    started: bool

    @property
    def taken(self) -> int:
        return self.counts.get("taken", 0)

    def percent(self, status: str) -> float:
        return 100.0 * self.counts.get(status, 0) / self.size if self.size else 0.0

    def to_dict(self) -> dict:
        shown = {name: self.counts.get(name, 0) for name in PROGRESS}
        return {"wave": self.number, "nodes": self.size, "started": self.started, **shown}


@dataclass(frozen=True)
class Rollout:
    id: int
    selector: str
    pipeline_type: str
    reason: str
    targets: list
    sizes: list
    wave_timeout_s: int
    author: str
    approvals_needed: int
    approvers: list
    status: str
    wave: int
    wave_started_ms: int | None
    paused_reason: str | None
    version: int
    nodes_total: int
    revert_of: int | None
    created_ms: int
    updated_ms: int
    waves: list = field(default_factory=list)
    audit: list = field(default_factory=list)

    @classmethod
    def from_row(cls, row, waves=(), audit=()) -> "Rollout":
        return cls(
            id=row.id,
            selector=row.selector,
            pipeline_type=row.pipeline_type,
            reason=row.reason,
            targets=json.loads(row.waves),
            sizes=json.loads(row.sizes),
            wave_timeout_s=row.wave_timeout_s,
            author=row.author,
            approvals_needed=row.approvals_needed,
            approvers=json.loads(row.approvers),
            status=row.status,
            wave=row.wave,
            wave_started_ms=row.wave_started_ms,
            paused_reason=row.paused_reason,
            version=row.version,
            nodes_total=row.nodes_total,
            revert_of=row.revert_of,
            created_ms=row.created_ms,
            updated_ms=row.updated_ms,
            waves=list(waves),
            audit=list(audit),
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def actions_for(self, operator: str | None) -> list[str]:
        """Return the actions ``operator`` may take now (none when signed out)."""
        if not operator:
            return []
        allowed = ACTIONS_BY_STATUS.get(self.status, ())
        if operator == self.author or operator in self.approvers:
            allowed = tuple(a for a in allowed if a != "approve")
        return list(allowed)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "selector": self.selector,
            "pipeline_type": self.pipeline_type,
            "reason": self.reason,
            "waves": self.targets,
            "wave_sizes": [
                end - start for start, end in zip([0, *self.sizes], self.sizes, strict=False)
            ],
            "wave_timeout_s": self.wave_timeout_s,
            "author": self.author,
            "approvals_needed": self.approvals_needed,
            "approved_by": self.approvers,
            "status": self.status,
            "current_wave": self.wave + 1 if self.wave >= 0 else None,
            "wave_started_at": iso(from_ms(self.wave_started_ms)),
            "paused_reason": self.paused_reason if self.status == PAUSED else None,
            "version": self.version,
            "nodes": self.nodes_total,
            "revert_of": self.revert_of,
            "created_at": iso(from_ms(self.created_ms)),
            "updated_at": iso(from_ms(self.updated_ms)),
            "progress": [wave.to_dict() for wave in self.waves],
            "audit": [record.to_dict() for record in self.audit],
            "delivering": self.status == RUNNING,
        }
