"""A rollout's desire, applied on the node (issue 18; docs/fleet.md §7).

The desire comes in the centre's answer, which the reporter believes only when it is signed with
this node's key within the tolerance. It is applied through the node's own store as any change:
compare-and-set on ``expect_id``, so a local change made since the centre fixed that id wins and
is reported as a conflict, never overwritten. The outcome goes in the next report, at once.
No Flask, no SQL.
"""

from webapp.accounts.users import name_problem
from webapp.core.errors import ConflictError, PipelineError
from webapp.core.text import terminal_safe

MAX_MESSAGE = 500  # characters of an outcome's message the centre keeps


class BadDesire(Exception):
    """A desire this node cannot read: the message says which field."""


def read_desire(desired: dict) -> tuple[str, int, str | None, str]:
    """Return (pipeline_type, expect_id, reason, by) of a desire, or raise BadDesire."""
    pipeline_type, expect_id = desired.get("pipeline_type"), desired.get("expect_id")
    reason, by = desired.get("reason"), desired.get("by")
    if not isinstance(pipeline_type, str):
        raise BadDesire("the desire names no pipeline_type")
    if type(expect_id) is not int or expect_id < 0:
        raise BadDesire("the desire's expect_id is not a change id")
    if reason is not None and not isinstance(reason, str):
        raise BadDesire("the desire's reason is not text")
    if not isinstance(by, str) or name_problem(by):
        raise BadDesire("the desire's author is not an operator name")
    return pipeline_type, expect_id, reason, by


def rollout_id(desired) -> int | None:
    """Return the desire's rollout id, or None when it has none (nothing to answer to)."""
    value = desired.get("rollout") if isinstance(desired, dict) else None
    return value if type(value) is int and 0 < value < 2**63 else None


def apply_desire(store, desired: dict) -> dict | None:
    """Apply ``desired`` through ``store``; return the outcome to report (None: no rollout id)."""
    rollout = rollout_id(desired)
    if rollout is None:
        return None
    try:
        pipeline_type, expect_id, reason, by = read_desire(desired)
        current = store.current()
        if current.managed and current.pipeline_type == pipeline_type:
            return outcome(rollout, "applied", current.id, f"already ran {pipeline_type}")
        result = store.set(
            pipeline_type,
            updated_by=f"fleet:{by} (rollout {rollout})",
            reason=reason,
            source="fleet",
            expect_id=expect_id,
            rollout=rollout,
        )
    except ConflictError as error:
        return outcome(rollout, "conflict", None, f"a local change wins: {error}")
    except (BadDesire, PipelineError) as error:
        return outcome(rollout, "error", None, str(error))
    change = result.change
    return outcome(rollout, "applied", change.id, f"set to {pipeline_type} (change #{change.id})")


def outcome(rollout: int, kind: str, change_id: int | None, message: str) -> dict:
    """Return the report's ``rollout`` field: one line of at most MAX_MESSAGE characters."""
    text = " ".join(terminal_safe(message).split())[:MAX_MESSAGE]
    return {"rollout": rollout, "outcome": kind, "change_id": change_id, "message": text}
