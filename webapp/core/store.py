"""The pipeline store: every SQL statement on ``pipeline_config``. Knows nothing of Flask.

The setting lives in the sensor database itself, beside tables that a sensor writer and an
uploader use all the time. So (see database.py for the mechanics):

* every write is one ``BEGIN IMMEDIATE`` unit of work, retried *as a whole* on busy/locked;
* every read is a single statement run to completion, so no snapshot is held open;
* the current pipeline is the newest row **by id**; every row we write is also the newest by
  ``updated_at`` (see :func:`webapp.core.changes.next_timestamp`);
* every read costs the same with a thousand rows or a million: indexes, keyset pages, bounds.

:class:`PipelineStore` implements :class:`webapp.core.backend.ChangeStore`, the interface the
rest of the tool uses; a second backend would implement the same.
"""

import json
from collections import namedtuple
from datetime import UTC, datetime

from webapp.core import demo, events, queries, schema, timefmt
from webapp.core.bounded import BoundedReads
from webapp.core.changes import (
    Change,
    SetResult,
    default_change,
    must_insert,
    new_metadata,
    next_timestamp,
    parse_metadata,
    request_change,
    stored_text,
)
from webapp.core.database import Database, fetch
from webapp.core.errors import InvalidInput
from webapp.core.pipelines import DEFAULT_BUCKETS, PIPELINE_TYPES, validate_type
from webapp.core.queries import SELECT_CHANGES
from webapp.core.schema import TABLE

NEWEST_STAMP = f"SELECT max(updated_at) FROM {TABLE} WHERE updated_at >= '0' AND updated_at < ':'"
EXPORT_CHUNK = 500  # rows per statement while streaming an export

Page = namedtuple("Page", "changes older newer")  # cursors: ids for before= / after=, or None


class PipelineStore(BoundedReads):
    """Read and change the pipeline setting in one SQLite file (see :class:`Database`)."""

    def __init__(
        self,
        path,
        *,
        create=False,
        write_timeout=10.0,
        buckets=None,
        require_reason=False,
        write_gate=None,
    ):
        self.buckets = dict(buckets or DEFAULT_BUCKETS)
        self.require_reason = require_reason
        self.db = Database(
            path,
            create=create,
            write_timeout=write_timeout,
            prepare=schema.check_shape,
            write_gate=write_gate,
        )

    @classmethod
    def from_settings(cls, config, path=None, **options) -> "PipelineStore":
        """Open the store that ``config`` (the ``PIPELINE_*`` settings) names.

        ``path``, else ``PIPELINE_DB``, else the embedded demo database (the only file this
        tool ever creates). ``options`` (``write_gate``) pass through.
        """
        from webapp.core.config import EMBEDDED_DB, buckets_from

        path = path or config.get("DB")
        create = not path
        if create:
            path = EMBEDDED_DB
            demo.ensure(path)  # a sensor-like file from the first use; a named path never
        return cls(
            path,
            create=create,
            write_timeout=config["WRITE_TIMEOUT"],
            buckets=buckets_from(config),
            require_reason=config["REQUIRE_REASON"],
            **options,
        )

    @property
    def path(self):
        return self.db.path

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- rows to changes -------------------------------------------------------------------

    def change_of(self, row) -> Change:
        """Return the :class:`Change` a stored row describes (as :meth:`rows` returns them)."""
        # Other tools may store any SQLite value in any column: numbers, blobs, NULLs.
        pipeline_type, stamp = stored_text(row["pipeline_type"]), row["updated_at"]
        return Change(
            id=row["id"],
            pipeline_type=pipeline_type,
            bucket=self.buckets.get(pipeline_type) if pipeline_type in PIPELINE_TYPES else None,
            updated_at=timefmt.parse(stamp),  # the stored value: a number is Unix seconds
            updated_by=stored_text(row["updated_by"]),
            metadata=parse_metadata(row["metadata"]),
            updated_at_text=stored_text(stamp),
            type_before=stored_text(row["type_before"]),
        )

    def _changes(self, sql, params=()) -> list[Change]:
        return [self.change_of(row) for row in self.db.read(sql, params)]

    def default_change(self) -> Change:
        return default_change(self.buckets)

    # -- reads -----------------------------------------------------------------------------

    def current(self) -> Change:
        """Return the newest change by id, or the never-set default. Writes nothing."""
        rows = self._changes(f"{SELECT_CHANGES} ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else self.default_change()

    def get(self, change_id: int) -> Change | None:
        """Return change ``change_id``, or None."""
        rows = self._changes(f"{SELECT_CHANGES} WHERE id = ?", (queries.change_id(change_id),))
        return rows[0] if rows else None

    def history(self, limit=20, *, before=None, after=None, **filters) -> list[Change]:
        """Return up to ``limit`` changes, newest first, older than ``before`` (an id) or newer
        than ``after``. Filters: ``pipeline_type``, ``updated_by``, ``since``, ``until``."""
        return [self.change_of(row) for row in self.rows(limit, before, after, **filters)]

    def rows(self, limit, before=None, after=None, bounded=True, **filters) -> list:
        """Return the rows :meth:`history` describes, as stored (``sqlite3.Row``; exports).

        On a table without our indexes a filtered read is ``bounded`` to the newest rows (a
        page), or walks the ids once (an export, ``bounded=False``): never a scan per row.
        """
        floor = self.scan_floor(filters) if bounded else None
        by_id = not bounded and queries.needs_index(filters) and not self.indexed()
        sql, params = queries.history(limit, before, after, floor, by_id, **filters)
        rows = self.db.read(sql, params)
        return rows[::-1] if after is not None else rows

    def page(self, limit=25, *, before=None, after=None, **filters) -> Page:
        """Return one page of history with the cursors of the pages beside it."""
        rows = self.history(limit + 1, before=before, after=after, **filters)
        if after is None:
            more_older, rows = len(rows) > limit, rows[:limit]
            more_newer = before is not None and self._any(after=rows[0].id if rows else before)
        else:
            more_newer, rows = len(rows) > limit, rows[-limit:]
            more_older = self._any(before=rows[-1].id if rows else after)
        older = rows[-1].id if rows and more_older else None
        newer = rows[0].id if rows and more_newer else None
        return Page(rows, older, newer)

    def _any(self, **filters) -> bool:
        return bool(self.history(1, **filters))

    def count(self, upto=1000, **filters) -> int:
        """Return how many changes match, counting at most ``upto`` (a full count is a scan)."""
        rows = self.db.read(*queries.count(upto, self.scan_floor(filters), **filters))
        return rows[0][0] if rows else 0

    def iter_rows(self, chunk=EXPORT_CHUNK, **filters):
        """Yield every matching row as stored, newest first, a bounded chunk per statement.

        Each chunk is its own statement run to completion: an export of a million rows holds
        no snapshot open and no more than ``chunk`` rows in memory.
        """
        before = None
        while True:
            rows = self.rows(chunk, before, bounded=False, **filters)
            yield from rows
            if len(rows) < chunk:
                return
            before = rows[-1]["id"]

    def changes_after(self, after_id: int, limit=1000) -> list[Change]:
        """Return changes with an id above ``after_id``, oldest first (monitor, webhooks)."""
        return self._changes(
            f"{SELECT_CHANGES} WHERE id > ? ORDER BY id LIMIT ?",
            (queries.change_id(after_id), int(limit)),
        )

    def window(self, start: datetime, limit: int) -> list[Change]:
        """Return the newest ``limit`` changes made since ``start``, newest first."""
        return self.history(limit, since=start)

    def table_sql(self) -> str | None:
        """Return the ``CREATE TABLE`` statement of ``pipeline_config``, or None (no table)."""
        rows = self.db.read(schema.TABLE_SQL, (TABLE,))
        return rows[0][0] if rows else None

    def accepted_types(self) -> tuple[str, ...]:
        """Return the types this table's CHECK accepts (ours when there is no table yet)."""
        return schema.accepted_types_of(self.table_sql())

    def data_version(self) -> int:
        """Return ``PRAGMA data_version``: it changes when another connection commits."""
        return self.db.pragma("data_version")

    @property
    def generation(self) -> int:
        """How many times the file was (re)opened: a new value may mean a replaced file."""
        return self.db.generation

    def status(self) -> dict:
        """Return what readiness checks need: journal mode and whether our table exists."""
        mode = self.db.pragma("journal_mode")
        exists = self.table_sql() is not None
        return {"journal_mode": mode, "table_exists": exists, "indexed": self.indexed()}

    # -- writes ----------------------------------------------------------------------------

    def set(self, pipeline_type, *, updated_by, reason=None, source="cli", expect_id=None,
            reverts_to=None, rollout=None) -> SetResult:  # fmt: skip
        """Make ``pipeline_type`` current, once; a no-op when it already is.

        With ``expect_id``, refuse (:class:`ConflictError`) unless the newest change still has
        that id (0 = never set). Metadata records reason, previous type and source (and the
        change reverted to, or the fleet rollout that asked for it).
        """
        request = request_change(
            pipeline_type,
            updated_by=updated_by,
            reason=reason,
            source=source,
            expect_id=expect_id,
            reverts_to=reverts_to,
            require_reason=self.require_reason,
            rollout=rollout,
        )
        # Before anything is written (even the switch to WAL): a type this table refuses.
        validate_type(request.pipeline_type, self.accepted_types())

        def work(conn):
            schema.create(conn)
            validate_type(request.pipeline_type, schema.accepted_types(conn))
            # fetch(): the newest row may hold bytes that are not UTF-8 (another tool's).
            rows = fetch(conn, f"{SELECT_CHANGES} ORDER BY id DESC LIMIT 1")
            current = self.change_of(rows[0]) if rows else self.default_change()
            if not must_insert(request, current):
                return SetResult(current, changed=False)
            # The newest stamp that text order sees, among values that start like a time.
            newest = fetch(conn, NEWEST_STAMP)[0][0]
            clock = datetime.now(UTC)
            stamp = next_timestamp(clock, timefmt.parse(newest))
            metadata = new_metadata(request, current, clock, stamp)
            cursor = conn.execute(
                "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata)"
                " VALUES (?, ?, ?, ?)",
                (
                    request.pipeline_type,
                    timefmt.stored(stamp),
                    request.updated_by,
                    json.dumps(metadata, ensure_ascii=False, allow_nan=False),
                ),
            )
            row = fetch(conn, f"{SELECT_CHANGES} WHERE id = ?", (cursor.lastrowid,))
            return SetResult(self.change_of(row[0]), changed=True)

        result = self.db.write(work)
        if result.changed:
            events.log_change(result.change)
        return result

    def revert(self, to_id, *, updated_by, reason=None, source="web", expect_id=None) -> SetResult:
        """Make the type of change ``to_id`` current again, as a new change that names it."""
        target = self.get(to_id)
        if target is None:
            raise InvalidInput(f"no change #{to_id} to revert to")
        if not target.managed:
            raise InvalidInput(f"change #{target.id} is {target.type_label}: cannot revert to it")
        return self.set(
            target.pipeline_type,
            updated_by=updated_by,
            reason=reason or (None if self.require_reason else f"revert to change #{target.id}"),
            source=source,
            expect_id=expect_id,
            reverts_to=target.id,
        )

    def initialize(self) -> None:
        """Create the ``pipeline_config`` table and our indexes if missing (nothing else)."""
        self.db.write(schema.create)


__all__ = ["Change", "Page", "PipelineStore", "SetResult"]
