"""The SQL of history reads: filters, keyset cursors and bounds, as (statement, parameters).

Every read here costs the same with a thousand changes or a million: pages are keyset reads on
the id, or on the ``updated_at`` index when a time range is asked for (ids and times agree for
every row we write); counts stop at a bound. The store runs these statements; nothing else does.
"""

from webapp.core import timefmt
from webapp.core.errors import InvalidInput
from webapp.core.pipelines import validate_type
from webapp.core.schema import SELECT_ROWS, TABLE


def history(limit, before=None, after=None, **filters) -> tuple[str, list]:
    """Return the statement for up to ``limit`` rows older than ``before`` or newer than
    ``after`` (ids), newest first (oldest first with ``after``: the caller reverses them)."""
    limit = _limit(limit)
    where, params, order = _filters(**filters)
    if before is not None or after is not None:
        cursor = change_id(before if before is not None else after)
        sign = "<" if before is not None else ">"
        if order != "id":
            row = f"(SELECT updated_at FROM {TABLE} WHERE id = ?)"
            where.append(f"(updated_at, id) {sign} ({row}, ?)")
            params += [cursor, cursor]
        else:
            where.append(f"id {sign} ?")
            params.append(cursor)
    direction = "ASC" if after is not None else "DESC"
    keys = ", ".join(f"{key} {direction}" for key in order.split(", "))
    return f"{SELECT_ROWS}{_where(where)} ORDER BY {keys} LIMIT ?", [*params, limit]


def count(upto, **filters) -> tuple[str, list]:
    """Return the statement counting matching rows, stopping at ``upto`` (a full count scans)."""
    where, params, _ = _filters(**filters)
    return f"SELECT count(*) FROM (SELECT 1 FROM {TABLE}{_where(where)} LIMIT ?)", [
        *params,
        _limit(upto),
    ]


def _where(clauses) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _filters(pipeline_type=None, updated_by=None, since=None, until=None):
    """Return (WHERE clauses, parameters, ORDER BY keys) for the history filters."""
    clauses, params = [], []
    if pipeline_type:
        clauses.append("pipeline_type = ?")
        params.append(validate_type(pipeline_type))
    if updated_by:
        # CAST: ``updated_by`` may be the stored bytes of a name that is not UTF-8 (another
        # tool's); compared as text, they match that row and nothing else. Text is unchanged.
        clauses.append("updated_by = CAST(? AS TEXT)")
        params.append(updated_by)
    if since is not None:
        clauses.append("updated_at >= ?")
        params.append(timefmt.bound(since))
    if until is not None:
        clauses.append("updated_at < ?")
        params.append(timefmt.bound(until))
    # A time range walks the updated_at index; ids and times agree for every row we write.
    order = "updated_at, id" if since is not None or until is not None else "id"
    return clauses, params, order


def _limit(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a whole number ≥ 1 (got {limit!r})")
    return limit


def change_id(value) -> int:
    """Return ``value`` if it can be a change id, else raise :class:`InvalidInput`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidInput(f"a change id must be a whole number ≥ 0 (got {value!r})")
    return value
