"""What operators do to a rollout: approve, start, pause, resume (skip or retry nodes), abort.

Every action is compare-and-set on the rollout's version: the caller names the version it saw,
and a rollout that moved since (another operator, or the gates) is refused with who did what,
when. Each action is one transaction with the rollout's row locked, and one audit record.
"""

import json
from datetime import UTC, datetime

from sqlalchemy import delete, select

from webapp.core.errors import ConflictError, InvalidInput, PipelineError
from webapp.core.timefmt import iso

from ..engine import run_write
from ..schema import nodes
from . import gates
from .model import ACTIONS_BY_STATUS
from .tables import (
    ABORTED,
    APPROVED,
    CONFLICT,
    DRIFTED,
    ERROR,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    TAKEN,
    WAITING,
    node_rollouts,
    rollout_audit,
    rollout_nodes,
)

ACTIONS = ("approve", "start", "pause", "resume", "abort")
SKIPPABLE = (WAITING, PENDING, CONFLICT, ERROR, DRIFTED)
RETRYABLE = (CONFLICT, ERROR, DRIFTED, PENDING)


class NotFound(PipelineError):
    http_status = 404


class Forbidden(PipelineError):
    http_status = 403


class StaleVersion(ConflictError):
    """The rollout moved since the version the caller saw (API: 412; pages: 409)."""


def last_action(connection, rollout_id: int) -> str:
    row = connection.execute(
        select(rollout_audit)
        .where(rollout_audit.c.rollout_id == rollout_id)
        .order_by(rollout_audit.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return "nobody"
    when = iso(datetime.fromtimestamp(row.at_ms / 1000, UTC))
    return f"{row.actor} did {row.action} at {when}"


def act(engine, rollout_id, action, actor, version, now, why=None, skip=(), retry=()):
    """Take ``action`` as ``actor`` on the rollout at ``version``; return the records written."""
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
    if not 1 <= rollout_id <= 2**31 - 1:
        raise NotFound(f"no rollout {rollout_id}")
    return run_write(
        engine, lambda c: _act(c, rollout_id, action, actor, version, now, why, skip, retry)
    )


def _act(connection, rollout_id, action, actor, version, now, why, skip, retry):
    rollout = gates.lock(connection, rollout_id)
    if rollout is None:
        raise NotFound(f"no rollout {rollout_id}")
    if rollout.version != version:
        raise StaleVersion(
            f"rollout {rollout_id} changed since version {version} (now {rollout.version}): "
            f"{last_action(connection, rollout_id)}; reload it and decide again"
        )
    if action not in ACTIONS_BY_STATUS.get(rollout.status, ()):
        raise ConflictError(
            f"rollout {rollout_id} is {rollout.status.replace('_', ' ')}: it cannot {action} "
            f"({last_action(connection, rollout_id)})"
        )
    if (skip or retry) and action != "resume":
        raise InvalidInput("skip and retry go with resume only")
    detail = {"why": why} if why else {}
    if action == "approve":
        return approve(connection, rollout, actor, now, detail)
    written = []
    if action == "start":
        gates.touch(connection, rollout_id, now, status=RUNNING)
        written.append(gates.audit(connection, rollout_id, actor, "start", now, **detail))
        written += gates.start_wave(connection, rollout, 0, gates.CENTRE, now)
    elif action == "pause":
        gates.touch(connection, rollout_id, now, status=PAUSED, paused_reason=f"paused by {actor}")
        written.append(gates.audit(connection, rollout_id, actor, "pause", now, **detail))
    elif action == "resume":
        moved = decide(connection, rollout, skip, SKIPPED, SKIPPABLE, now, actor)
        moved += decide(connection, rollout, retry, PENDING, RETRYABLE, now, actor)
        # The wave's timeout counts again from now: the operator just looked at it.
        gates.touch(
            connection, rollout_id, now, status=RUNNING, paused_reason=None, wave_started_ms=now
        )
        names = {"skip": list(skip)} if skip else {}
        names |= {"retry": list(retry)} if retry else {}
        written.append(gates.audit(connection, rollout_id, actor, "resume", now, **detail, **names))
    elif action == "abort":
        gates.touch(connection, rollout_id, now, status=ABORTED, wave_started_ms=None)
        # Delivery stops; nodes that took the type stay covered (drift is still shown).
        released = (node_rollouts.c.rollout_id == rollout_id) & node_rollouts.c.status.not_in(
            (TAKEN, DRIFTED)
        )
        gates.count_pointers(
            connection, {k: -n for k, n in gates.pointer_statuses(connection, released).items()}
        )
        connection.execute(delete(node_rollouts).where(released))
        gates.bump_version(connection)
        written.append(gates.audit(connection, rollout_id, actor, "abort", now, **detail))
    return written + gates.advance(connection, rollout_id, now)


def approve(connection, rollout, actor, now, detail) -> list[dict]:
    """Record ``actor``'s approval; enough of them (not the author's) approve the rollout."""
    approvers = json.loads(rollout.approvers)
    if actor == rollout.author:
        raise Forbidden(f"{actor} created rollout {rollout.id}: another operator must approve it")
    if actor in approvers:
        raise ConflictError(f"{actor} already approved rollout {rollout.id}")
    approvers.append(actor)
    done = len(approvers) >= rollout.approvals_needed - 1
    values = {"approvers": json.dumps(approvers)}
    if done:
        values["status"] = APPROVED
    gates.touch(connection, rollout.id, now, **values)
    return [gates.audit(connection, rollout.id, actor, "approve", now, **detail)]


def decide(connection, rollout, names, new, allowed, now, actor) -> int:
    """Move the named nodes of the rollout's started waves to ``new``; refuse others (400)."""
    if not names:
        return 0
    rows = connection.execute(
        select(rollout_nodes).where(
            rollout_nodes.c.rollout_id == rollout.id, rollout_nodes.c.node_name.in_(names)
        )
    ).all()
    found = {row.node_name: row for row in rows}
    for name in names:
        row = found.get(name)
        if row is None:
            raise InvalidInput(f"{name!r} is not a node of rollout {rollout.id}")
        if row.status not in allowed or (new == PENDING and row.wave > rollout.wave):
            raise InvalidInput(
                f"{name} is {row.status}: it cannot be {'skipped' if new == SKIPPED else 'retried'}"
            )
    for name in names:
        row = found[name]
        values = {}
        if new == PENDING:  # a retry sends the desire against what the centre knows now
            values["expect_id"] = (
                connection.execute(
                    select(nodes.c.change_id).where(nodes.c.id == row.node_id)
                ).scalar()
                or 0
            )
        gates.move_node(
            connection,
            rollout.id,
            row.node_id,
            row.wave,
            row.status,
            new,
            now,
            message=f"{'skipped' if new == SKIPPED else 'retried'} by {actor}",
            **values,
        )
    return len(names)
