"""What the rollout API and pages share: query-string values, one node row as both show it."""

import time

from webapp.core.errors import InvalidInput
from webapp.core.text import clean_text, whole_number
from webapp.core.timefmt import iso

from ..nodes import from_ms, state_at
from .tables import NODE_STATUSES

MAX_ROWS = 500


def whole_arg(text, name: str, low: int, high: int, default):
    """Return a whole number from a query string (ASCII digits, ``low``-``high``), or default."""
    if text is None or text == "":
        return default
    return whole_number(text, name, low, high)


def node_rows_request(args):
    """Return (wave 0-based or None, statuses or None, after, limit) from a query string."""
    wave = whole_arg(args.get("wave"), "wave", 1, 1000, None)
    status = (args.get("status") or "").strip() or None
    if status is not None and status not in NODE_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(NODE_STATUSES)}")
    after = clean_text(args.get("after"), "after (a node name)", 200)
    limit = whole_arg(args.get("limit"), "limit", 1, MAX_ROWS, 50)
    return (
        (None if wave is None else wave - 1),
        (None if status is None else (status,)),
        after,
        limit,
    )


def node_row(row, now_ms: int | None = None) -> dict:
    """Return one of a rollout's nodes as the API shows it."""
    moment = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "node": row.node_name,
        "wave": row.wave + 1,
        "status": row.status,
        "stale": row.stale_at_ms <= moment,
        "state": state_at(row, moment),
        "previous_type": row.previous_type,
        "pipeline_type": row.pipeline_type,
        "expect_id": row.expect_id,
        "message": row.message,
        "updated_at": iso(from_ms(row.updated_ms)),
    }
