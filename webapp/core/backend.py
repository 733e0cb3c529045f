"""What the rest of the tool asks of a store: the small interface a second backend would write.

Views, the JSON API, the CLI, the watcher and the notifier use only these members.
:class:`webapp.core.store.PipelineStore` implements them on SQLite
(``tests/core/test_store.py`` checks that it still does). No Flask, no SQL.
"""

from datetime import datetime
from typing import Protocol, runtime_checkable

from webapp.core.changes import Change, SetResult


@runtime_checkable
class ChangeStore(Protocol):
    """Read and change the pipeline setting, wherever it is kept."""

    buckets: dict[str, str]

    def current(self) -> Change:
        """The change in force (the never-set default when there is none)."""

    def get(self, change_id: int) -> Change | None:
        """One change by id."""

    def history(self, limit=20, *, before=None, after=None, **filters) -> list[Change]:
        """Changes newest first, a keyset page at a time; filters: type, operator, time."""

    def page(self, limit=25, *, before=None, after=None, **filters):
        """One page of history with the cursors of the pages beside it."""

    def count(self, upto=1000, **filters) -> int:
        """How many changes match, counting at most ``upto``."""

    def iter_rows(self, chunk=500, **filters):
        """Every matching change as stored, newest first, in bounded chunks (exports)."""

    def change_of(self, row) -> Change:
        """The change a stored row describes."""

    def changes_after(self, after_id: int, limit=1000) -> list[Change]:
        """Changes newer than ``after_id``, oldest first (monitor, webhooks)."""

    def active_at(self, moment: datetime) -> Change:
        """The change in force at ``moment``."""

    def window(self, start: datetime, limit: int) -> list[Change]:
        """The newest ``limit`` changes since ``start``."""

    def operators(self, limit=100) -> list[str]:
        """Distinct operator names, for filters."""

    def scan_floor(self, filters=None) -> int | None:
        """The lowest id a filtered read searches (None: all; a table without indexes)."""

    def data_version(self) -> int:
        """A number that changes when another process commits (a cheap "anything new?")."""

    def status(self) -> dict:
        """What readiness reports: journal mode, whether the table exists."""

    def set(self, pipeline_type, *, updated_by, reason=None, source="cli", expect_id=None,
            reverts_to=None, rollout=None) -> SetResult:  # fmt: skip
        """Make ``pipeline_type`` current once (no-op when it is; conflict on a stale base)."""

    def revert(self, to_id, *, updated_by, reason=None, source="web", expect_id=None) -> SetResult:
        """Make change ``to_id``'s type current again, as a new change that names it."""

    def close(self) -> None:
        """Release what the store holds open."""
