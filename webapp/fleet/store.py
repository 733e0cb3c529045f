"""The fleet store: every read the centre's pages and API make (writes: store_write.py).

Public read interface (PAGES and the API code against it; all times UTC):

- ``FleetStore.from_settings(app.config)`` (or ``webapp.fleet.db.get_store()`` in a request).
- ``nodes(node_filter=NodeFilter(), limit=50, after=None) -> NodePage``: nodes in name order,
  ``limit`` (1-500) at a time, after the cursor ``after`` (the previous page's
  ``next_cursor``; None on the last page). ``NodeFilter.from_args(request.args)`` reads
  ``selector`` (``region=eu,site=berlin``), ``pipeline_type``, ``state`` and ``name_prefix``.
- ``iter_nodes(node_filter)``: every matching node in name order, read 500 at a time (exports).
- ``node(name) -> FleetNode | None``.
- ``changes(name, limit=50, before=None) -> (list[ReportedChange], next_cursor)``: the node's
  changes as reported, newest first (a restore's new epoch before the old one); ``before`` is
  a ``ReportedChange.cursor`` ("epoch.id").
- ``events(name, limit=50) -> list[NodeEvent]``: restores and other notes, newest first.
- ``summary() -> dict``: ``{"nodes": N, "by_type": {"raw": 3, ...} (the four managed types,
  zeros included), "unmanaged": {"other": 1}, "by_state": {"reporting": 9, "stale": 1,
  "error": 0}, "by_label": {"region": {"eu": 5}}, "version": V}``; ``by_label`` holds the 500
  most common label values.
- ``mix(days=7) -> list[DayMix]``: oldest day first, today last; ``by_type`` counts the nodes
  that reported each type that day.
- ``version() -> int``: moves whenever a node appears, changes its pipeline, its labels or its
  state (including turning stale); a heartbeat alone never moves it. Cheap: poll it.

Every read costs the same at 1 000 or 100 000 nodes: keyset pages on indexes, maintained counts.
Reads that depend on "stale" first run the sweep (store_write.sweep), which marks nodes whose
deadline has passed: one indexed probe when none has.
"""

import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, tuple_

from webapp.core.errors import InvalidInput
from webapp.core.pipelines import PIPELINE_TYPES

from . import schema, store_write
from .engine import database_url, describe, fleet_db_setting, make_engine, run_read
from .filters import MAX_PAGE, NodeFilter
from .nodes import DayMix, FleetNode, NodeEvent, NodePage, ReportedChange, from_ms
from .report import is_node_name
from .rollouts.tables import SYNC_OF_STATUS, SYNC_STATES, node_rollouts, statuses_of_sync
from .schema import changes, counts, day_counts, events, label_counts, meta, node_labels, nodes

EXPORT_CHUNK = 500
TOP_LABEL_VALUES = 500
NAME_END = "\x7f"  # sorts after every character a node name may hold (ASCII below DEL)
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


class FleetStore:
    """The centre's store at ``url`` (SQLAlchemy URL); one per process, shared by its threads."""

    def __init__(self, url: str, *, pool_size: int = 8, report_rate: int = 500):
        self.url = url
        self.name = describe(url)
        self.engine = make_engine(url, pool_size=pool_size)
        self.report_rate = report_rate

    @classmethod
    def from_settings(cls, config) -> "FleetStore":
        return cls(
            database_url(fleet_db_setting(config)),
            pool_size=int(config.get("WORKER_THREADS") or 8),
            report_rate=int(config.get("FLEET_REPORT_RATE") or 500),
        )

    def close(self) -> None:
        self.engine.dispose()

    # Node lists ------------------------------------------------------------------------------

    def nodes(self, node_filter=None, limit: int = 50, after: str | None = None) -> NodePage:
        """Return one page of nodes matching ``node_filter``, in name order, after ``after``."""
        node_filter = node_filter or NodeFilter()
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be from 1 to {MAX_PAGE}")
        moment = self.sweep_for(node_filter)
        query, order = self.node_query(node_filter, self.rarest_first(node_filter.selector))
        if after is not None:
            query = query.where(order > after)
        query = query.order_by(order).limit(limit + 1)
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        page = [FleetNode.from_row(row, moment) for row in rows[:limit]]
        return NodePage(page, page[-1].name if len(rows) > limit else None)

    def iter_nodes(self, node_filter=None):
        """Yield every node matching ``node_filter`` in name order, reading a chunk at a time."""
        after = None
        while True:
            page = self.nodes(node_filter, EXPORT_CHUNK, after)
            yield from page.nodes
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def sweep_for(self, node_filter) -> int:
        """Mark newly stale nodes when the filter reads ``state``; return the time read at."""
        moment = now_ms()
        if node_filter.state is not None:
            store_write.sweep(self.engine, moment)
        return moment

    def rarest_first(self, selector: dict) -> list:
        """Return the selector's labels, the one fewest nodes carry first (it drives the page:
        ``site=berlin,region=eu`` walks Berlin's nodes in name order, not Europe's)."""
        pairs = sorted(selector.items())
        if len(pairs) < 2:
            return pairs
        wanted = or_(*(and_(label_counts.c.key == k, label_counts.c.value == v) for k, v in pairs))
        query = select(label_counts.c.key, label_counts.c.n).where(wanted)
        found = dict(run_read(self.engine, lambda c: c.execute(query).all()))
        return sorted(pairs, key=lambda pair: found.get(pair[0], 0))

    def node_query(self, node_filter, labels=None):
        """Return (query, the column it is ordered by) for ``node_filter``; ``labels`` is the
        selector in the order to join it (the first one orders the page)."""
        query = select(nodes)
        order = nodes.c.name
        pairs = sorted(node_filter.selector.items()) if labels is None else labels
        for position, (key, value) in enumerate(pairs):
            label = node_labels.alias(f"label{position}")
            query = query.join(
                label,
                and_(label.c.node_id == nodes.c.id, label.c.key == key, label.c.value == value),
            )
            if position == 0:
                order = label.c.node_name  # the selector's index gives the name order
        if node_filter.pipeline_type is not None:
            query = query.where(nodes.c.pipeline_type == node_filter.pipeline_type)
        query = with_sync(query)
        if node_filter.state in SYNC_STATES:  # issue 18: a node's sync, beside its liveness
            query = query.where(node_rollouts.c.status.in_(statuses_of_sync(node_filter.state)))
        elif node_filter.state is not None:
            query = query.where(nodes.c.state == node_filter.state)
        if node_filter.name_prefix:
            prefix = node_filter.name_prefix
            query = query.where(order >= prefix, order < prefix + NAME_END)
        return query, order

    # One node ------------------------------------------------------------------------------

    def node(self, name: str) -> FleetNode | None:
        """Return the node called ``name``, or None (without a query for a name no node has)."""
        if not is_node_name(name):
            return None
        query = with_sync(select(nodes)).where(nodes.c.name == name)
        row = run_read(self.engine, lambda c: c.execute(query).first())
        return None if row is None else FleetNode.from_row(row, now_ms())

    def changes(self, name: str, limit: int = 50, before: str | None = None):
        """Return (changes newest first, cursor of the next page or None) for node ``name``."""
        if not is_node_name(name):
            return [], None
        query = (
            select(changes).join(nodes, nodes.c.id == changes.c.node_id).where(nodes.c.name == name)
        )
        if before is not None:
            query = query.where(tuple_(changes.c.epoch, changes.c.id) < change_cursor(before))
        query = query.order_by(changes.c.epoch.desc(), changes.c.id.desc()).limit(limit + 1)
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        found = [
            ReportedChange(row.epoch, row.id, json.loads(row.record), from_ms(row.received_ms))
            for row in rows[:limit]
        ]
        return found, (found[-1].cursor if len(rows) > limit else None)

    def events(self, name: str, limit: int = 50) -> list[NodeEvent]:
        """Return node ``name``'s events (restores), newest first."""
        if not is_node_name(name):
            return []
        query = (
            select(events)
            .join(nodes, nodes.c.id == events.c.node_id)
            .where(nodes.c.name == name)
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        return [NodeEvent(from_ms(r.at_ms), r.kind, json.loads(r.detail)) for r in rows]

    # The fleet at a glance -----------------------------------------------------------------

    def summary(self) -> dict:
        """Return the maintained counts: nodes, by type, by state, by label (see the module)."""
        store_write.sweep(self.engine, now_ms())

        def read(connection):
            return (
                connection.execute(select(counts).where(counts.c.n > 0)).all(),
                connection.execute(
                    select(label_counts)
                    .where(label_counts.c.n > 0)
                    .order_by(label_counts.c.n.desc())
                    .limit(TOP_LABEL_VALUES)
                ).all(),
                connection.execute(select(meta.c.value).where(meta.c.name == "version")).scalar(),
                connection.execute(select(meta).where(meta.c.name.startswith("sync:"))).all(),
            )

        count_rows, label_rows, version, sync_rows = run_read(self.engine, read)
        by_type = dict.fromkeys(PIPELINE_TYPES, 0)
        unmanaged: dict[str, int] = {}
        by_state = dict.fromkeys(schema.STATES, 0)
        for row in count_rows:
            by_state[row.state] = by_state.get(row.state, 0) + row.n
            if row.pipeline_type in by_type:
                by_type[row.pipeline_type] += row.n
            elif row.pipeline_type != schema.NO_TYPE:
                unmanaged[row.pipeline_type] = unmanaged.get(row.pipeline_type, 0) + row.n
        by_label: dict[str, dict[str, int]] = {}
        for row in sorted(label_rows, key=lambda r: (r.key, r.value)):
            by_label.setdefault(row.key, {})[row.value] = row.n
        return {
            "nodes": sum(by_state.values()),
            "by_type": by_type,
            "unmanaged": unmanaged,
            "by_state": by_state,
            "by_label": by_label,
            "by_sync": by_sync(sync_rows),
            "version": version or 0,
        }

    def mix(self, days: int = 7) -> list[DayMix]:
        """Return the last ``days`` UTC days, oldest first: how many nodes ran each type."""
        today = now_ms() // DAY_MS
        query = select(day_counts).where(day_counts.c.day > today - days)
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        per_day: dict[int, dict[str, int]] = {today - n: {} for n in range(days)}
        for row in rows:
            if row.day in per_day:
                per_day[row.day][row.pipeline_type] = row.n
        epoch = datetime(1970, 1, 1, tzinfo=UTC).date()
        return [DayMix(epoch + timedelta(days=day), per_day[day]) for day in sorted(per_day)]

    def version(self) -> int:
        """Return the fleet version (moves on any pipeline, state or label change)."""
        store_write.sweep(self.engine, now_ms())
        query = select(meta.c.value).where(meta.c.name == "version")
        return run_read(self.engine, lambda c: c.execute(query).scalar()) or 0

    # Writes (store_write.py) ---------------------------------------------------------------

    def ingest(
        self, report, msg_id: str, timestamp: int, received_ms: int | None = None, hook=None
    ):
        """Store a checked report (see store_write.ingest, and its ``hook``); return its Ack."""
        moment = now_ms() if received_ms is None else received_ms
        return store_write.ingest(
            self.engine, report, msg_id, timestamp, moment, self.report_rate, hook
        )


def by_sync(rows) -> dict:
    """Return {sync: nodes} from the maintained counts of rollout statuses (issue 18)."""
    found = dict.fromkeys(SYNC_STATES, 0)
    for row in rows:
        sync = SYNC_OF_STATUS.get(row.name.removeprefix("sync:"))
        if sync is not None:
            found[sync] += row.value
    return found


def with_sync(query):
    """Add the status of the rollout that covers each node (its ``sync``; issue 18)."""
    return query.add_columns(node_rollouts.c.status.label("rollout_status")).outerjoin(
        node_rollouts, node_rollouts.c.node_id == nodes.c.id
    )


def change_cursor(text: str) -> tuple[int, int]:
    """Return (epoch, id) from a changes cursor "epoch.id"; InvalidInput when it is not one."""
    epoch, dot, change_id = text.partition(".")
    parts = (epoch, change_id)
    if not dot or not all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts):
        raise InvalidInput("before must be a changes cursor like 0.12")
    return int(epoch), int(change_id)
