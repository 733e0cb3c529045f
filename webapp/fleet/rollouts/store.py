"""The rollouts' store: create a rollout (its nodes and waves fixed), read it, list them, act on
it (compare-and-set on its version). Each write is one retried transaction (engine.run_write).

Creation takes a lock first (PostgreSQL: an advisory lock; SQLite: its IMMEDIATE transaction),
so two overlapping rollouts created at once cannot both pass the overlap check.
"""

import json
import time

from sqlalchemy import and_, case, delete, func, insert, select, text

from webapp.core.errors import ConflictError, InvalidInput

from ..engine import run_read, run_write
from ..filters import NodeFilter
from ..schema import nodes
from ..store_write import sweep
from . import gates
from .actions import NotFound
from .model import AuditRecord, Rollout, Wave
from .plan import NewRollout, wave_of, wave_order, wave_sizes
from .tables import (
    ACTIVE,
    APPROVED,
    AWAITING_APPROVAL,
    WAITING,
    node_rollouts,
    rollout_audit,
    rollout_counts,
    rollout_nodes,
    rollouts,
)

CREATE_LOCK = 0x706D726C  # "pmrl": one rollout created at a time, across centre hosts
AUDIT_SHOWN = 200
MAX_ID = 2**31 - 1  # a rollout id (an Integer column on both backends)
STALE_SCANNED = 1000
_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def now_ms() -> int:
    return int(time.time() * 1000)


class Overlap(ConflictError):
    """The selection overlaps an active rollout's (HTTP 409, naming it)."""


class RolloutStore:
    """Rollouts in the fleet store ``store`` (a FleetStore: its engine and its node queries)."""

    def __init__(self, store):
        self.store = store
        self.engine = store.engine

    # Create -----------------------------------------------------------------------------

    def create(self, new: NewRollout, author: str, approvals: int, now=None) -> Rollout:
        """Create the rollout: select its nodes, fix their waves; refuse an overlap (409)."""
        moment = now_ms() if now is None else now
        rollout_id = run_write(
            self.engine, lambda c: self._create(c, new, author, approvals, moment)
        )
        return self.get(rollout_id, moment)

    def selection(self, new: NewRollout):
        """Return the query of the selected nodes' (id, name, pipeline_type)."""
        query, _ = self.store.node_query(NodeFilter(selector=new.labels))
        query = query.with_only_columns(nodes.c.id, nodes.c.name, nodes.c.pipeline_type)
        if new.revert_of is not None:  # a revert: the nodes that rollout changed from a type
            previous = select(rollout_nodes.c.node_id).where(
                rollout_nodes.c.rollout_id == new.revert_of,
                rollout_nodes.c.previous_type == new.previous_type,
            )
            query = query.where(nodes.c.id.in_(previous))
        return query

    def _create(self, connection, new, author, approvals, now) -> int:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CREATE_LOCK})
        selected = connection.execute(self.selection(new)).all()
        if not selected:
            raise InvalidInput(f"the selector {new.selector or '(every node)'!r} matches no node")
        holder = connection.execute(
            select(rollouts.c.id, rollouts.c.author, rollouts.c.status)
            .join(node_rollouts, node_rollouts.c.rollout_id == rollouts.c.id)
            .where(
                rollouts.c.status.in_(ACTIVE),
                node_rollouts.c.node_id.in_(self.selection(new).with_only_columns(nodes.c.id)),
            )
            .limit(1)
        ).first()
        if holder is not None:
            raise Overlap(
                f"rollout {holder.id} ({holder.status}, by {holder.author}) already holds some "
                "of these nodes: finish or abort it first"
            )
        sizes = wave_sizes(new.waves, len(selected))
        status = AWAITING_APPROVAL if approvals > 1 else APPROVED
        rollout_id = connection.execute(
            insert(rollouts)
            .values(
                selector=new.selector,
                pipeline_type=new.pipeline_type,
                reason=new.reason,
                waves=_json(list(new.waves)),
                sizes=_json(sizes),
                wave_timeout_s=new.wave_timeout_s,
                author=author,
                approvals_needed=approvals,
                approvers="[]",
                status=status,
                wave=-1,
                version=1,
                nodes_total=len(selected),
                revert_of=new.revert_of,
                groups=_json(previous_types(selected)),
                created_ms=now,
                updated_ms=now,
            )
            .returning(rollouts.c.id)
        ).scalar_one()
        by_name = {row.name: row for row in selected}
        rows = []
        for position, name in enumerate(wave_order(rollout_id, by_name)):
            row = by_name[name]
            rows.append(
                {
                    "rollout_id": rollout_id,
                    "node_id": row.id,
                    "node_name": name,
                    "wave": wave_of(position, sizes),
                    "status": WAITING,
                    "previous_type": row.pipeline_type,
                    "updated_ms": now,
                }
            )
        connection.execute(insert(rollout_nodes), rows)
        # The nodes' pointers move to this rollout (a finished one's stop covering them).
        replaced = node_rollouts.c.node_id.in_(
            select(rollout_nodes.c.node_id).where(rollout_nodes.c.rollout_id == rollout_id)
        )
        gates.count_pointers(
            connection, {k: -n for k, n in gates.pointer_statuses(connection, replaced).items()}
        )
        gates.count_pointers(connection, {WAITING: len(rows)})
        connection.execute(delete(node_rollouts).where(replaced))
        connection.execute(
            insert(node_rollouts),
            [
                {
                    "node_id": r["node_id"],
                    "rollout_id": rollout_id,
                    "wave": r["wave"],
                    "status": WAITING,
                }
                for r in rows
            ],
        )
        for wave in range(len(sizes)):
            gates.recount(connection, rollout_id, wave)
        gates.bump_version(connection)
        gates.audit(
            connection,
            rollout_id,
            author,
            "create",
            now,
            why=new.reason,
            nodes=len(selected),
            selector=new.selector,
            pipeline_type=new.pipeline_type,
        )
        return rollout_id

    # Read -------------------------------------------------------------------------------

    def get(self, rollout_id: int, now=None) -> Rollout:
        """Return the rollout with its waves' progress and audit trail (gates checked first)."""
        moment = now_ms() if now is None else now
        self.check_gates(rollout_id, moment)
        sweep(self.engine, moment)  # "stale" as of now (one indexed probe when none turned)
        return run_read(self.engine, lambda c: self._get(c, rollout_id))

    def _get(self, connection, rollout_id: int) -> Rollout:
        if not 1 <= rollout_id <= MAX_ID:
            raise NotFound(f"no rollout {rollout_id}")
        row = connection.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise NotFound(f"no rollout {rollout_id}")
        count_rows = connection.execute(
            select(rollout_counts).where(rollout_counts.c.rollout_id == rollout_id)
        ).all()
        per_wave: dict[int, dict] = {}
        for count in count_rows:
            if count.n:
                per_wave.setdefault(count.wave, {})[count.status] = count.n
        stale = self.stale_counts(connection, row)
        sizes = json.loads(row.sizes)
        waves = []
        for number, (start, end) in enumerate(zip([0, *sizes], sizes, strict=False)):
            counts = {**per_wave.get(number, {})}
            if number in stale:
                counts["stale"] = stale[number]
            waves.append(Wave(number + 1, end - start, counts, number <= row.wave))
        records = connection.execute(
            select(rollout_audit)
            .where(rollout_audit.c.rollout_id == rollout_id)
            .order_by(rollout_audit.c.id.desc())
            .limit(AUDIT_SHOWN)
        ).all()
        audit = [AuditRecord(r.at_ms, r.actor, r.action, json.loads(r.detail)) for r in records]
        return Rollout.from_row(row, waves, audit)

    def stale_counts(self, connection, row) -> dict:
        """Return {wave: pending nodes that are stale} for the started wave.

        Read from the fleet's stale nodes (an index on state), at most STALE_SCANNED of them,
        each looked up by primary key in this rollout: the cost never grows with the wave. Past
        that many stale nodes in the fleet the figure is a lower bound (the page says "at least").
        """
        if row.wave < 0 or row.status not in ACTIVE:
            return {}
        stale_ids = (
            select(nodes.c.id)
            .where(nodes.c.state == "stale")
            .order_by(nodes.c.state, nodes.c.name)
            .limit(STALE_SCANNED)
        )
        # Only the rollout and the node ids in the condition: one primary-key lookup per stale
        # node (with the wave and status there too, SQLite walks the wave's whole index range).
        in_wave = and_(rollout_nodes.c.wave == row.wave, rollout_nodes.c.status == "pending")
        n = connection.execute(
            select(func.coalesce(func.sum(case((in_wave, 1), else_=0)), 0)).where(
                rollout_nodes.c.rollout_id == row.id,
                rollout_nodes.c.node_id.in_(stale_ids.scalar_subquery()),
            )
        ).scalar()
        return {row.wave: n} if n else {}

    def check_gates(self, rollout_id: int, now: int) -> list[dict]:
        """Pause a running rollout whose wave timed out (a cheap read when none did)."""
        if not 1 <= rollout_id <= MAX_ID:
            raise NotFound(f"no rollout {rollout_id}")
        row = run_read(
            self.engine,
            lambda c: c.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first(),
        )
        if row is None or not gates.timed_out(
            row.status, row.wave_started_ms, row.wave_timeout_s, now
        ):
            return []
        return run_write(self.engine, lambda c: gates.advance(c, rollout_id, now))

    def version(self, rollout_id: int, now=None) -> int:
        """Return the rollout's version (moves on every change of it): poll it."""
        self.check_gates(rollout_id, now_ms() if now is None else now)
        query = select(rollouts.c.version).where(rollouts.c.id == rollout_id)
        found = run_read(self.engine, lambda c: c.execute(query).scalar())
        if found is None:
            raise NotFound(f"no rollout {rollout_id}")
        return found

    def list(self, limit: int = 50, before: int | None = None) -> list[Rollout]:
        """Return rollouts newest first, ``limit`` at a time, below id ``before``."""
        query = select(rollouts).order_by(rollouts.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(rollouts.c.id < before)
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        return [Rollout.from_row(row) for row in rows]

    def wave_nodes(self, rollout_id, wave=None, statuses=None, limit=50, after=None) -> list:
        """Return the rollout's node rows in name order, optionally of one wave and statuses.

        One indexed range per status, merged here: the cost is ``limit`` rows per status, never
        the wave's size (a sort of 90 000 pending nodes would be)."""
        rn = rollout_nodes
        query = select(rn, nodes.c.error, nodes.c.stale_at_ms, nodes.c.pipeline_type).join(
            nodes, nodes.c.id == rn.c.node_id
        )
        query = query.where(rn.c.rollout_id == rollout_id)
        if wave is not None:
            query = query.where(rn.c.wave == wave)
        if after:
            query = query.where(rn.c.node_name > after)
        query = query.order_by(rn.c.node_name).limit(limit)
        parts = [query] if not statuses else [query.where(rn.c.status == s) for s in statuses]

        def read(connection):
            return [row for part in parts for row in connection.execute(part).all()]

        rows = run_read(self.engine, read)
        return sorted(rows, key=lambda row: row.node_name)[:limit]

    def groups(self, rollout_id: int) -> dict:
        """Return {previous type: nodes} (what a revert would set back, per group)."""
        query = select(rollouts.c.groups).where(rollouts.c.id == rollout_id)
        found = run_read(self.engine, lambda c: c.execute(query).scalar())
        return {} if found is None else json.loads(found)


def previous_types(selected) -> dict:
    """Return {type the node ran: count} of the selected nodes (counted once, at creation)."""
    groups: dict = {}
    for row in selected:
        key = row.pipeline_type or ""
        groups[key] = groups.get(key, 0) + 1
    return dict(sorted(groups.items()))
