"""Bulk writes for benchmarks, demos and repair: many new nodes at once, and counts rebuilt from
the node table. Not a request path: ``recount`` reads every node (once, on purpose).

``import_new_nodes`` stores each checked report as ingest would store a node's first report,
several hundred per transaction with multi-row statements; ``recount`` then makes the maintained
counts (counts, label_counts, the fleet size) exactly what the node table says.
"""

import time

from sqlalchemy import delete, func, insert, literal_column, select, update

from .engine import run_write, upsert
from .schema import NO_TYPE, counts, day_counts, label_counts, meta, node_labels, nodes
from .store_write import DAY_MS, STALE_AFTER, _json, bump_version

CHUNK = 500


def import_new_nodes(engine, items) -> int:
    """Store ``items`` — (report, msg_id, timestamp, received_ms) of nodes the store does not
    hold yet — then rebuild the counts; return how many were stored."""
    items = list(items)
    for start in range(0, len(items), CHUNK):
        run_write(engine, lambda c, chunk=items[start : start + CHUNK]: _import(c, chunk))
    run_write(engine, recount)
    if engine.dialect.name == "postgresql":
        # Fresh statistics, or the planner sees an empty table and scans 100 000 rows for a
        # one-row probe until autovacuum's next ANALYZE.
        run_write(engine, lambda c: c.exec_driver_sql("ANALYZE"))
    return len(items)


def node_row(report, msg_id, timestamp, received_ms) -> dict:
    record = report.record
    pipeline_type = record["pipeline_type"] if record else None
    return {
        "name": report.node,
        "labels": _json(report.labels),
        "interval_s": report.interval_s,
        "agent": report.agent,
        "report_ts": timestamp,
        "seq": report.seq,
        "last_msg_id": msg_id,
        "last_report_ms": received_ms,
        "stale_at_ms": received_ms + STALE_AFTER * report.interval_s * 1000,
        "state": state_of(report, received_ms),
        "error": report.error,
        "pipeline_type": pipeline_type,
        "current": _json(report.current),
        "epoch": 0,
        "acked_id": max([0, *(change["id"] for change in report.changes)]),
        "change_id": (record["id"] or 0) if record else 0,
        "mix_day": received_ms // DAY_MS if pipeline_type else None,
        "mix_types": _json([pipeline_type]) if pipeline_type else None,
        "created_ms": received_ms,
    }


def state_of(report, received_ms: int) -> str:
    """The state the sweep would give the node now (stored exact, so statistics are right)."""
    if received_ms + STALE_AFTER * report.interval_s * 1000 <= time.time() * 1000:
        return "stale"
    return "error" if report.error else "reporting"


def _import(connection, chunk) -> None:
    rows = [node_row(*item) for item in chunk]
    stored = connection.execute(
        insert(nodes).returning(nodes.c.id, nodes.c.name, sort_by_parameter_order=True), rows
    ).all()
    labels = [
        {"node_id": node_id, "key": key, "value": value, "node_name": name}
        for (node_id, name), (report, *_rest) in zip(stored, chunk, strict=True)
        for key, value in report.labels.items()
    ]
    if labels:
        connection.execute(insert(node_labels), labels)
    per_day: dict[tuple, int] = {}
    for row in rows:
        if row["pipeline_type"]:
            key = (row["mix_day"], row["pipeline_type"])
            per_day[key] = per_day.get(key, 0) + 1
    for (day, pipeline_type), amount in sorted(per_day.items()):
        upsert(
            connection,
            day_counts,
            {"day": day, "pipeline_type": pipeline_type, "n": amount},
            ("day", "pipeline_type"),
            {"n": amount},
        )


def recount(connection) -> None:
    """Rebuild counts, label_counts and the fleet size from the node table (one pass each)."""
    connection.execute(delete(counts))
    # Inline, not a bound parameter: PostgreSQL must see one expression in SELECT and GROUP BY.
    kind = func.coalesce(nodes.c.pipeline_type, literal_column(repr(NO_TYPE)))
    connection.execute(
        insert(counts).from_select(
            ["pipeline_type", "state", "n"],
            select(kind, nodes.c.state, func.count()).group_by(kind, nodes.c.state),
        )
    )
    connection.execute(delete(label_counts))
    connection.execute(
        insert(label_counts).from_select(
            ["key", "value", "n"],
            select(node_labels.c.key, node_labels.c.value, func.count()).group_by(
                node_labels.c.key, node_labels.c.value
            ),
        )
    )
    size = connection.execute(select(func.count()).select_from(nodes)).scalar()
    connection.execute(update(meta).where(meta.c.name == "nodes").values(value=size))
    bump_version(connection)
