"""When a wave starts, takes or pauses, and how a node's status moves (every count kept exact).

All of it runs inside the caller's write transaction, with the rollout's row locked first
(``lock``: ``FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transaction holds the only write
lock), so an operator's action and a node's report never both move one rollout. The order of
locks is always node row (ingest), then rollout row, then its node rows: no deadlock.

Gates, checked at each report of a node of the rollout and on every read: a wave has **taken**
when none of its nodes is waiting or pending; it then ends and the next starts (``expect_id``
fixed now, from the change id the centre holds). A conflict, an error or a drift in the current
wave pauses the rollout naming the nodes; so does a wave not taken within ``wave_timeout_s``.
"""

import json

from sqlalchemy import case, delete, func, insert, select, update

from ..engine import upsert
from ..schema import meta, nodes
from ..store_write import bump_version
from .tables import (
    CONFLICT,
    DRIFTED,
    ERROR,
    FINISHED,
    PAUSED,
    PENDING,
    RUNNING,
    TAKEN,
    WAITING,
    node_rollouts,
    rollout_audit,
    rollout_counts,
    rollout_nodes,
    rollouts,
)

POINTER_COUNT = "sync:"  # meta rows "sync:<status>": nodes a rollout covers, per status
CENTRE = "centre"  # the actor of what the gates do by themselves
HOLD = (CONFLICT, ERROR, DRIFTED)  # statuses that pause the wave they are in
NAMES_SHOWN = 10
_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def lock(connection, rollout_id: int):
    """Return the rollout's row, locked for this transaction (None: no such rollout)."""
    query = select(rollouts).where(rollouts.c.id == rollout_id)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    return connection.execute(query).first()


def audit(connection, rollout_id: int, actor: str, action: str, now: int, **detail) -> dict:
    """Write one audit record; return it as the API shows it (without its time)."""
    connection.execute(
        insert(rollout_audit).values(
            rollout_id=rollout_id, at_ms=now, actor=actor, action=action, detail=_json(detail)
        )
    )
    return {"rollout": rollout_id, "actor": actor, "action": action, **detail}


def touch(connection, rollout_id: int, now: int, **values) -> None:
    """Change the rollout's row and move its version (every change does)."""
    connection.execute(
        update(rollouts)
        .where(rollouts.c.id == rollout_id)
        .values(version=rollouts.c.version + 1, updated_ms=now, **values)
    )


def count(connection, rollout_id: int, wave: int, status: str, amount: int) -> None:
    upsert(
        connection,
        rollout_counts,
        {"rollout_id": rollout_id, "wave": wave, "status": status, "n": amount},
        ("rollout_id", "wave", "status"),
        {"n": amount},
    )


def count_pointers(connection, deltas: dict) -> None:
    """Move the fleet's maintained count of nodes per rollout status (the summary's by_sync)."""
    for status, amount in sorted(deltas.items()):
        if amount:
            upsert(
                connection,
                meta,
                {"name": POINTER_COUNT + status, "value": amount},
                ("name",),
                {"value": amount},
            )


def pointer_statuses(connection, where) -> dict:
    """Return {status: n} of the node_rollouts rows ``where`` selects (before a bulk change)."""
    rows = connection.execute(
        select(node_rollouts.c.status, func.count()).where(where).group_by(node_rollouts.c.status)
    ).all()
    return dict(rows)


def wave_counts(connection, rollout_id: int, wave: int) -> dict:
    rows = connection.execute(
        select(rollout_counts.c.status, rollout_counts.c.n).where(
            rollout_counts.c.rollout_id == rollout_id, rollout_counts.c.wave == wave
        )
    ).all()
    return {status: n for status, n in rows if n}


def move_node(connection, rollout_id, node_id, wave, old, new, now, message=None, **values):
    """Move one node from status ``old`` to ``new`` (its row, its pointer and the counts)."""
    connection.execute(
        update(rollout_nodes)
        .where(rollout_nodes.c.rollout_id == rollout_id, rollout_nodes.c.node_id == node_id)
        .values(status=new, message=message, updated_ms=now, **values)
    )
    connection.execute(
        update(node_rollouts)
        .where(node_rollouts.c.node_id == node_id, node_rollouts.c.rollout_id == rollout_id)
        .values(status=new, **values)
    )
    for status, amount in sorted([(old, -1), (new, 1)]):
        count(connection, rollout_id, wave, status, amount)
    count_pointers(connection, {old: -1, new: 1})
    bump_version(connection)  # the node's sync is part of the fleet view


def start_wave(connection, rollout, wave: int, actor: str, now: int) -> list[dict]:
    """Start ``wave``: fix each node's ``expect_id``; a node already on the type has taken."""
    rn = rollout_nodes
    of_node = nodes.c.id == rn.c.node_id
    # 0 is the node's "never set" (its store's expect_id for an empty table).
    change_id = func.coalesce(select(nodes.c.change_id).where(of_node).scalar_subquery(), 0)
    running = select(nodes.c.pipeline_type).where(of_node).scalar_subquery()
    connection.execute(
        update(rn)
        .where(rn.c.rollout_id == rollout.id, rn.c.wave == wave, rn.c.status == WAITING)
        .values(
            expect_id=change_id,
            status=case((running == rollout.pipeline_type, TAKEN), else_=PENDING),
            updated_ms=now,
        )
    )
    nr = node_rollouts
    mine = (rn.c.rollout_id == rollout.id) & (rn.c.node_id == nr.c.node_id)
    connection.execute(
        update(nr)
        .where(nr.c.rollout_id == rollout.id, nr.c.wave == wave)
        .values(
            status=select(rn.c.status).where(mine).scalar_subquery(),
            expect_id=select(rn.c.expect_id).where(mine).scalar_subquery(),
        )
    )
    before = wave_counts(connection, rollout.id, wave)
    recount(connection, rollout.id, wave)
    after = wave_counts(connection, rollout.id, wave)
    count_pointers(connection, {k: after.get(k, 0) - before.get(k, 0) for k in {*before, *after}})
    bump_version(connection)
    touch(connection, rollout.id, now, wave=wave, wave_started_ms=now)
    size = sum(wave_counts(connection, rollout.id, wave).values())
    return [audit(connection, rollout.id, actor, "wave_start", now, wave=wave + 1, nodes=size)]


def recount(connection, rollout_id: int, wave: int) -> None:
    """Count one wave's statuses again (once per wave start: bounded by the wave)."""
    connection.execute(
        delete(rollout_counts).where(
            rollout_counts.c.rollout_id == rollout_id, rollout_counts.c.wave == wave
        )
    )
    rows = connection.execute(
        select(rollout_nodes.c.status, func.count())
        .where(rollout_nodes.c.rollout_id == rollout_id, rollout_nodes.c.wave == wave)
        .group_by(rollout_nodes.c.status)
    ).all()
    if rows:
        connection.execute(
            insert(rollout_counts),
            [{"rollout_id": rollout_id, "wave": wave, "status": s, "n": n} for s, n in rows],
        )


def names_in(connection, rollout_id: int, wave: int, statuses) -> list[str]:
    """Return up to NAMES_SHOWN "name (status)" of the wave's nodes in ``statuses``."""
    rows = connection.execute(
        select(rollout_nodes.c.node_name, rollout_nodes.c.status, rollout_nodes.c.message)
        .where(
            rollout_nodes.c.rollout_id == rollout_id,
            rollout_nodes.c.wave == wave,
            rollout_nodes.c.status.in_(statuses),
        )
        .order_by(rollout_nodes.c.node_name)
        .limit(NAMES_SHOWN)
    ).all()
    return [
        f"{name} ({status}{': ' + message if message else ''})" for name, status, message in rows
    ]


def timed_out(status: str, started_ms, timeout_s: int, now: int) -> bool:
    """True when a running rollout's wave has had its ``timeout_s`` without taking."""
    return status == RUNNING and started_ms is not None and now - started_ms > timeout_s * 1000


def pause(connection, rollout, why: str, now: int, **detail) -> list[dict]:
    touch(connection, rollout.id, now, status=PAUSED, paused_reason=why)
    return [audit(connection, rollout.id, CENTRE, "pause", now, why=why, **detail)]


def advance(connection, rollout_id: int, now: int) -> list[dict]:
    """Apply the gates to a running rollout (locked here); return the audit records written."""
    written: list[dict] = []
    while True:
        rollout = lock(connection, rollout_id)
        if rollout is None or rollout.status != RUNNING:
            return written
        wave, sizes = rollout.wave, json.loads(rollout.sizes)
        counts = wave_counts(connection, rollout_id, wave)
        held = [s for s in HOLD if counts.get(s)]
        if held:
            names = names_in(connection, rollout_id, wave, HOLD)
            why = f"wave {wave + 1} holds: {', '.join(names)}"
            return written + pause(connection, rollout, why, now, wave=wave + 1, nodes=names)
        if not counts.get(PENDING) and not counts.get(WAITING):
            written.append(
                audit(connection, rollout_id, CENTRE, "wave_end", now, wave=wave + 1, **counts)
            )
            if wave + 1 >= len(sizes):
                touch(connection, rollout_id, now, status=FINISHED, wave_started_ms=None)
                return written + [audit(connection, rollout_id, CENTRE, "finish", now)]
            written += start_wave(connection, rollout, wave + 1, CENTRE, now)
            continue
        if timed_out(rollout.status, rollout.wave_started_ms, rollout.wave_timeout_s, now):
            names = names_in(connection, rollout_id, wave, (PENDING,))
            why = (
                f"wave {wave + 1} not taken within {rollout.wave_timeout_s} s: "
                f"{counts.get(PENDING, 0)} pending ({', '.join(names)})"
            )
            return written + pause(connection, rollout, why, now, wave=wave + 1, nodes=names)
        return written
