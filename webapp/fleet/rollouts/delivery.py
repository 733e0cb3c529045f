"""The ingest hook: what a node's report means for the rollout that covers it, and the desire
its answer carries.

``on_report`` runs inside ingest's write transaction, after the node's row is stored. A node no
rollout covers costs one primary-key read (``node_rollouts`` joined to its rollout); only a
report that moves the node's status (it took the type, reported a conflict or an error, drifted)
locks the rollout, moves the counts and applies the gates.

The desire goes only to a node that said ``accept_rollouts: true``, whose wave has started, whose
status is pending (a conflict or an error waits for an operator's retry), while the rollout runs.
``expect_id`` is the one fixed when the node's wave started, never one read from later reports.
"""

from sqlalchemy import bindparam, select

from webapp.core.errors import InvalidInput
from webapp.core.text import clean_text

from . import gates
from .tables import CONFLICT, DRIFTED, ERROR, PENDING, RUNNING, TAKEN, node_rollouts, rollouts

MAX_MESSAGE = 500
OUTCOMES = {"conflict": CONFLICT, "error": ERROR}


# Built once: building a statement costs more than running this one (a primary-key read).
COVERING = (
    select(
        node_rollouts,
        rollouts.c.status.label("rollout_status"),
        rollouts.c.pipeline_type.label("target"),
        rollouts.c.reason,
        rollouts.c.author,
        rollouts.c.wave.label("started_wave"),
        rollouts.c.wave_started_ms,
        rollouts.c.wave_timeout_s,
    )
    .join(rollouts, rollouts.c.id == node_rollouts.c.rollout_id)
    .where(node_rollouts.c.node_id == bindparam("node_id"))
)


def covering(connection, node_id: int):
    """Return the node's rollout pointer joined to its rollout (None: no rollout covers it)."""
    return connection.execute(COVERING, {"node_id": node_id}).first()


def outcome_of(report, rollout_id: int):
    """Return (status, message) the report's "rollout" outcome says for this rollout, or None.

    The field is another machine's words: anything malformed reads as no outcome.
    """
    told = report.rollout
    if not isinstance(told, dict) or told.get("rollout") != rollout_id:
        return None
    if isinstance(told.get("rollout"), bool):
        return None
    status = OUTCOMES.get(told.get("outcome"))
    if status is None:
        return None
    try:
        message = clean_text(told.get("message"), "message", MAX_MESSAGE)
    except InvalidInput:
        message = "(the node's message was not plain text)"
    return status, message


def next_status(status: str, running_type, target: str, outcome) -> tuple[str, str | None]:
    """Return (status, message) after a report: what the node runs wins over what it says."""
    if status in (PENDING, CONFLICT, ERROR) and running_type == target:
        return TAKEN, None
    if status == PENDING and outcome is not None:
        return outcome
    if status == TAKEN and running_type is not None and running_type != target:
        return DRIFTED, f"runs {running_type}"
    if status == DRIFTED and running_type == target:
        return TAKEN, None
    return status, None


def on_report(connection, node_id: int, report, running_type, now: int) -> dict | None:
    """Record what the report means for the node's rollout; return the desire to answer, or None."""
    row = covering(connection, node_id)
    if row is None:
        return None
    new, message = next_status(
        row.status, running_type, row.target, outcome_of(report, row.rollout_id)
    )
    if new != row.status or gates.timed_out(
        row.rollout_status, row.wave_started_ms, row.wave_timeout_s, now
    ):
        gates.lock(connection, row.rollout_id)  # then read again: an operator may have acted
        row = covering(connection, node_id)
        if row is None:
            return None
        new, message = next_status(
            row.status, running_type, row.target, outcome_of(report, row.rollout_id)
        )
        if new != row.status:
            gates.move_node(
                connection, row.rollout_id, node_id, row.wave, row.status, new, now, message
            )
        gates.advance(connection, row.rollout_id, now)
        row = covering(connection, node_id)
        if row is None:
            return None
    if not (
        report.accept_rollouts
        and row.status == PENDING
        and row.rollout_status == RUNNING
        and row.wave <= row.started_wave
    ):
        return None
    return {
        "rollout": row.rollout_id,
        "pipeline_type": row.target,
        "expect_id": row.expect_id,
        "reason": row.reason,
        "by": row.author,
    }
