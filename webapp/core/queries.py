"""The SQL of history reads: filters, keyset cursors and bounds, as (statement, parameters).

Every read here costs the same with a thousand changes or a million: pages are keyset reads on
the id, or on the ``updated_at`` index when a time range is asked for (ids and times agree for
every row we write); counts stop at a bound. The store runs these statements; nothing else does.
"""

from webapp.core import timefmt
from webapp.core.errors import InvalidInput
from webapp.core.pipelines import validate_type
from webapp.core.schema import COLUMNS, INDEX_NAMES, TABLE

# On a table without our indexes (another tool made it), a filtered read scans at most the newest
# SCAN_BOUND rows by id (a range of the rowid: bounded work, whatever the table's size).
SCAN_BOUND = 10_000
INDEXED = (
    f"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = '{TABLE}' "
    f"AND name IN ({', '.join(repr(name) for name in INDEX_NAMES)})"
)
# The lowest id a bounded read looks at: NULL when the table has our indexes or is small.
SCAN_FLOOR = (
    f"SELECT CASE WHEN ({INDEXED}) = {len(INDEX_NAMES)} THEN NULL "
    f"ELSE (SELECT id FROM {TABLE} ORDER BY id DESC LIMIT 1 OFFSET {SCAN_BOUND - 1}) END"
)
OPERATORS_SCAN = (
    f"SELECT DISTINCT CAST(updated_by AS BLOB) FROM {TABLE} "
    "WHERE id >= ? AND typeof(updated_by) = 'text' AND updated_by > '' ORDER BY 1 LIMIT ?"
)


# The type of the row before each row, by id: what ``previous`` is when a row's metadata lacks it
# (another tool's row). One rowid seek per row, the same on every read path.
def type_before(row: str) -> str:
    """The subquery of the type of the row before ``row`` (a table or alias name), by id."""
    return (
        f"(SELECT before.pipeline_type FROM {TABLE} AS before "
        f"WHERE before.id < {row}.id ORDER BY before.id DESC LIMIT 1)"
    )


SELECT_CHANGES = f"SELECT {', '.join(COLUMNS)}, {type_before(TABLE)} AS type_before FROM {TABLE}"


def needs_index(filters) -> bool:
    """True when ``filters`` make a read that only our indexes keep small."""
    return any(filters.get(name) for name in ("pipeline_type", "updated_by")) or any(
        filters.get(name) is not None for name in ("since", "until")
    )


def history(limit, before=None, after=None, floor=None, by_id=False, **filters):
    """Return the statement for up to ``limit`` rows older than ``before`` or newer than
    ``after`` (ids), newest first (oldest first with ``after``: the caller reverses them);
    with ``floor``, among ids from ``floor`` up only (see SCAN_BOUND); ``by_id`` orders a time
    range by id (no ``updated_at`` index to walk)."""
    limit = _limit(limit)
    where, params, order = _filters(**filters)
    order = "id" if by_id else order
    if floor is not None:
        where.append("id >= ?")
        params.append(floor)
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
    # The row before is looked up for the rows of the page only, after the LIMIT: a filtered
    # read may pass over thousands of rows on its way to a page.
    page = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}{_where(where)} ORDER BY {keys} LIMIT ?"
    outer = f"SELECT page.*, {type_before('page')} AS type_before FROM ({page}) AS page"
    return f"{outer} ORDER BY {keys}", [*params, limit]


def count(upto, floor=None, **filters) -> tuple[str, list]:
    """Return the statement counting matching rows, stopping at ``upto`` (a full count scans)."""
    where, params, _ = _filters(**filters)
    if floor is not None:
        where.append("id >= ?")
        params.append(floor)
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
