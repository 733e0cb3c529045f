"""The reads that need our indexes, kept bounded on a table without them (another tool made it,
and no change of ours has added them yet): a mixin of :class:`webapp.core.store.PipelineStore`.

With the indexes, each is an index seek. Without them, each scans at most the newest
``queries.SCAN_BOUND`` rows by id (a rowid range: bounded work on a table of any size), so an
anonymous page cannot burn a worker; ``pipeline-manager migrate`` adds the indexes (README:
"Rows written by other tools"). No Flask.
"""

from datetime import datetime

from webapp.core import queries, schema, timefmt
from webapp.core.changes import Change
from webapp.core.queries import SELECT_CHANGES
from webapp.core.schema import INDEX_NAMES, TABLE


class BoundedReads:
    """Index checks, the operator list and the change in force at a moment (needs ``db``)."""

    def indexed(self) -> bool:
        """True when the table has our indexes (or no table yet: our first write makes both)."""
        rows = self.db.read(queries.INDEXED)
        return not self.db.read(schema.TABLE_SQL, (TABLE,)) or rows[0][0] == len(INDEX_NAMES)

    def scan_floor(self, filters=None) -> int | None:
        """The lowest id a read with ``filters`` may scan: None unless the table lacks our
        indexes and holds more than ``queries.SCAN_BOUND`` rows (README: other tools' rows)."""
        if filters is not None and not queries.needs_index(filters):
            return None
        rows = self.db.read(queries.SCAN_FLOOR)
        return rows[0][0] if rows else None

    def operators(self, limit=100, stored=False) -> list:
        """Return up to ``limit`` distinct ``updated_by`` names, in order (one index seek each).

        The seek key is the stored bytes, not the decoded text: a name that is not UTF-8 reads
        with U+FFFD in it and is searched for by its bytes (``stored=True`` returns those).
        """
        floor = self.scan_floor()
        if floor is not None:  # no index to seek: the names in the newest rows, one bounded scan
            rows = self.db.read(queries.OPERATORS_SCAN, (floor, limit))
            return [row[0] if stored else row[0].decode("utf-8", "replace") for row in rows]
        names, last = [], b""
        while len(names) < limit:
            rows = self.db.read(
                # Text values only: numbers sort below any text, blobs above X''.
                f"SELECT CAST(min(updated_by) AS BLOB) FROM {TABLE} "
                "WHERE updated_by > CAST(? AS TEXT) AND updated_by < X''",
                (last,),
            )
            if not rows or rows[0][0] is None:
                break
            last = rows[0][0]
            names.append(last if stored else last.decode("utf-8", "replace"))
        return names

    def active_at(self, moment: datetime) -> Change:
        """Return the change in force at ``moment`` (the default if none was made before it)."""
        floor = self.scan_floor()
        if floor is not None:  # no index on updated_at: search the ids, whose times agree
            found = self._last_id_at_or_before(timefmt.bound(moment))
            rows = self._changes(f"{SELECT_CHANGES} WHERE id = ?", (found,)) if found else []
        else:
            rows = self._changes(
                f"{SELECT_CHANGES} WHERE updated_at <= ? ORDER BY updated_at DESC, id DESC LIMIT 1",
                (timefmt.bound(moment),),
            )
        return rows[0] if rows else self.default_change()

    def _last_id_at_or_before(self, bound: str) -> int | None:
        """Binary search on the id (one rowid seek per step) for the newest row stamped at or
        before ``bound``: exact while ids and times agree, as they do for every row we write."""
        rows = self.db.read(f"SELECT max(id) FROM {TABLE}")
        low, high, best = 0, (rows[0][0] or 0) + 1 if rows else 0, None
        while low < high:  # the answer lies in [low, high)
            middle = (low + high) // 2
            rows = self.db.read(
                f"SELECT id, updated_at <= ? FROM {TABLE} WHERE id >= ? AND id < ? "
                "ORDER BY id LIMIT 1",
                (bound, middle, high),
            )
            if rows and rows[0][1]:
                best, low = rows[0][0], rows[0][0] + 1
            else:  # no row from middle up, or the first one is later than the bound
                high = middle
        return best
