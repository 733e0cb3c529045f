"""The fleet store's writes: a checked report (``ingest``) and the read-time stale ``sweep``.

Each is one write transaction, retried as a whole (engine.run_write). The node's row is read
with ``FOR UPDATE`` on PostgreSQL (SQLite's IMMEDIATE transaction already holds the only write
lock), so two hosts ingesting reports of one node apply them one after the other, and counters
are changed by upserts in key order (no deadlock between two transactions).

A heartbeat from a node whose type, state and labels did not change is one UPDATE of its row:
counts, labels and the fleet version are written only when something a reader sees changed.
"""

import json
import math
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update

from .engine import insert_ignore, run_read, run_write, upsert
from .schema import (
    NO_TYPE,
    changes,
    counts,
    day_counts,
    events,
    label_counts,
    meta,
    node_labels,
    nodes,
)

DAY_MS = 86_400_000
STALE_AFTER = 3  # intervals without a report before a node is stale
LIVE_STATES = ("reporting", "error")
_json = json.JSONEncoder(ensure_ascii=True, allow_nan=False, sort_keys=False).encode


@dataclass(frozen=True)
class Ack:
    """What the centre answers a stored (or ignored) report."""

    acknowledged_id: int
    next_report_s: int
    outcome: str  # stored | replay | out_of_order
    restored: bool = False
    desired: dict | None = None  # issue 18: what a rollout asks of the node (the hook's answer)


def next_interval(interval_s: int, fleet_size: int, report_rate: int) -> int:
    """Return the heartbeat to ask for: the node's own, or longer so the whole fleet's reports
    stay under ``report_rate`` per second."""
    return max(interval_s, math.ceil(fleet_size / max(report_rate, 1)))


def ingest(engine, report, msg_id: str, timestamp: int, now: int, report_rate: int, hook=None):
    """Store ``report`` (already checked) received at ``now`` (ms); return the acknowledgement.

    ``hook(connection, node_id, report, pipeline_type, now)``, when given, runs in the same
    transaction once the report is stored (rollouts); what it returns is the Ack's ``desired``.
    """
    return run_write(
        engine, lambda c: _ingest(c, report, msg_id, timestamp, now, report_rate, hook)
    )


# Built once: a heartbeat runs these two statements, and building a statement costs more than
# running it. The node's row and the fleet's size come in one read.
FLEET_SIZE = select(meta.c.value).where(meta.c.name == "nodes").scalar_subquery()
READ_NODE = select(nodes, FLEET_SIZE.label("fleet_size")).where(nodes.c.name == bindparam("name"))
READ_NODE_LOCKED = READ_NODE.with_for_update(of=nodes)
UPDATE_NODE = update(nodes).where(nodes.c.id == bindparam("node_id"))


def _ingest(connection, report, msg_id, timestamp, now, report_rate, hook=None) -> Ack:
    locked = connection.dialect.name == "postgresql"
    found = connection.execute(READ_NODE_LOCKED if locked else READ_NODE, {"name": report.node})
    row = found.first()
    fleet_size = (
        row.fleet_size if row is not None else connection.execute(select(FLEET_SIZE)).scalar()
    )
    if row is not None and (timestamp, report.seq) <= (row.report_ts, row.seq):
        outcome = "replay" if msg_id == row.last_msg_id else "out_of_order"
        asked = next_interval(row.interval_s, fleet_size or 0, report_rate)
        return Ack(row.acked_id, asked, outcome)
    if row is None:
        fleet_size = (fleet_size or 0) + 1
    asked = next_interval(report.interval_s, fleet_size or 0, report_rate)
    newest = report.newest_id
    restored = row is not None and newest is not None and newest < row.acked_id
    epoch = 0 if row is None else row.epoch + restored
    reported_ids = [change["id"] for change in report.changes]
    # A restore acknowledges the restored newest id: the node resumes from there.
    acked = newest if restored else max([0 if row is None else row.acked_id, *reported_ids])
    record = report.record
    pipeline_type = record["pipeline_type"] if record else (row.pipeline_type if row else None)
    change_id = (record["id"] or 0) if record else (row.change_id if row else 0)
    state = "error" if report.error else "reporting"
    labels = _json(report.labels)
    day = now // DAY_MS
    counted = json.loads(row.mix_types) if row is not None and row.mix_day == day else []
    values = {
        "labels": labels,
        "interval_s": report.interval_s,
        "agent": report.agent,
        "report_ts": timestamp,
        "seq": report.seq,
        "last_msg_id": msg_id,
        "last_report_ms": now,
        "stale_at_ms": now + STALE_AFTER * asked * 1000,
        "state": state,
        "error": report.error,
        "pipeline_type": pipeline_type,
        "current": _json(report.current),
        "epoch": epoch,
        "acked_id": acked,
        "change_id": change_id,
    }
    if pipeline_type is not None and pipeline_type not in counted:
        counted = [*counted, pipeline_type]
        upsert(
            connection,
            day_counts,
            {"day": day, "pipeline_type": pipeline_type, "n": 1},
            ("day", "pipeline_type"),
            {"n": 1},
        )
        values.update(mix_day=day, mix_types=_json(counted))
    if row is None:
        node_id = connection.execute(
            insert(nodes).values(**values, name=report.node, created_ms=now).returning(nodes.c.id)
        ).scalar_one()
        connection.execute(
            update(meta).where(meta.c.name == "nodes").values(value=meta.c.value + 1)
        )
    else:
        node_id = row.id
        connection.execute(UPDATE_NODE, {"node_id": node_id, **values})
    old_key = None if row is None else (row.pipeline_type or NO_TYPE, row.state)
    new_key = (pipeline_type or NO_TYPE, state)
    visible = old_key != new_key or row.change_id != change_id or restored
    if old_key != new_key:
        move_count(connection, old_key, new_key)
    if row is None or row.labels != labels:
        relabel(
            connection,
            node_id,
            report.node,
            {} if row is None else json.loads(row.labels),
            report.labels,
        )
        visible = True
    store_changes(connection, node_id, epoch, report.changes, now)
    if restored:
        detail = {"from_id": row.acked_id, "to_id": newest, "epoch": epoch}
        connection.execute(
            insert(events).values(node_id=node_id, at_ms=now, kind="restore", detail=_json(detail))
        )
    if visible:
        bump_version(connection)
    desired = None if hook is None else hook(connection, node_id, report, pipeline_type, now)
    return Ack(acked, asked, "stored", restored, desired)


def store_changes(connection, node_id, epoch, records, now) -> None:
    """Insert the reported change rows; ones already held (a resent batch) are skipped."""
    insert_ignore(
        connection,
        changes,
        [
            {
                "node_id": node_id,
                "epoch": epoch,
                "id": record["id"],
                "pipeline_type": record["pipeline_type"],
                "record": _json(record),
                "received_ms": now,
            }
            for record in records
        ],
    )


def move_count(connection, old_key, new_key) -> None:
    """Move one node from count ``old_key`` (None: new node) to ``new_key``, in key order."""
    moves = sorted(
        [(new_key, 1)] + ([] if old_key is None else [(old_key, -1)]), key=lambda m: m[0]
    )
    for (pipeline_type, state), amount in moves:
        upsert(
            connection,
            counts,
            {"pipeline_type": pipeline_type, "state": state, "n": amount},
            ("pipeline_type", "state"),
            {"n": amount},
        )


def relabel(connection, node_id, name, old: dict, new: dict) -> None:
    """Replace the node's label rows and move the label counts, in key order."""
    gone = sorted((k, v) for k, v in old.items() if new.get(k) != v)
    added = sorted((k, v) for k, v in new.items() if old.get(k) != v)
    for key, _ in gone:
        connection.execute(
            node_labels.delete().where(node_labels.c.node_id == node_id, node_labels.c.key == key)
        )
    if added:
        connection.execute(
            insert(node_labels),
            [{"node_id": node_id, "key": k, "value": v, "node_name": name} for k, v in added],
        )
    for (key, value), amount in sorted([(kv, -1) for kv in gone] + [(kv, 1) for kv in added]):
        upsert(
            connection,
            label_counts,
            {"key": key, "value": value, "n": amount},
            ("key", "value"),
            {"n": amount},
        )


def bump_version(connection) -> None:
    connection.execute(update(meta).where(meta.c.name == "version").values(value=meta.c.value + 1))


def sweep(engine, now: int) -> int:
    """Mark nodes whose deadline passed before ``now`` stale; return how many turned stale.

    Readers call it first: one indexed probe when no node turned stale since the last sweep.
    """
    deadlines = run_read(engine, lambda c: c.execute(EARLIEST_DEADLINES).one())
    if all(deadline is None or deadline > now for deadline in deadlines):
        return 0
    return run_write(engine, lambda c: _sweep(c, now))


# The earliest deadline of each live state: the first entry of (state, stale_at_ms), one lookup
# on both backends, whatever the planner's statistics say. ("WHERE stale_at_ms <= now LIMIT 1"
# let PostgreSQL choose a full scan, expecting an early hit that a swept table never has.)
EARLIEST_DEADLINES = select(
    *(
        select(nodes.c.stale_at_ms)
        .where(nodes.c.state == state)
        .order_by(nodes.c.stale_at_ms)
        .limit(1)
        .scalar_subquery()
        for state in LIVE_STATES
    )
)


def _sweep(connection, now: int) -> int:
    moved = 0
    for old_state in LIVE_STATES:
        turned = connection.execute(
            update(nodes)
            .where(nodes.c.state == old_state, nodes.c.stale_at_ms <= now)
            .values(state="stale")
            .returning(nodes.c.pipeline_type)
        ).all()
        per_type: dict[str, int] = {}
        for (pipeline_type,) in turned:
            key = pipeline_type or NO_TYPE
            per_type[key] = per_type.get(key, 0) + 1
        for pipeline_type, amount in sorted(per_type.items()):
            for state, delta in sorted([(old_state, -amount), ("stale", amount)]):
                upsert(
                    connection,
                    counts,
                    {"pipeline_type": pipeline_type, "state": state, "n": delta},
                    ("pipeline_type", "state"),
                    {"n": delta},
                )
        moved += len(turned)
    if moved:
        bump_version(connection)
    return moved


def count_nodes(engine) -> int:
    """Return how many nodes the store holds (a maintained count)."""
    query = select(func.coalesce(func.sum(meta.c.value), 0)).where(meta.c.name == "nodes")
    return run_read(engine, lambda c: c.execute(query).scalar())
