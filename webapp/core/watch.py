"""Follow ``pipeline_config`` as it changes: every new row once, in id order, whoever wrote it.

Used by ``monitor`` and the webhook notifier. Each check costs one ``PRAGMA data_version`` on a
connection that holds no transaction open; rows are read only when another connection committed
(or the file at the path was replaced). A missing, replaced or busy file is reported once and
watched until it is usable again. :class:`Feed` hands the newest id to threads that wait for
news (the notifier's deliveries). No Flask.
"""

import threading
import time

from webapp.core.errors import PipelineError
from webapp.core.text import terminal_safe

BATCH = 500  # rows read per check; a longer backlog is read by the next checks at once


class Watcher:
    """Yield the changes made after a starting point, surviving outages of the file."""

    def __init__(self, store, warn=lambda line: None, sleep=None):
        self.store = store
        # Its lines name paths and errors that hold stored text: escaped for any terminal.
        self.warn = lambda line: warn(terminal_safe(line))
        self.sleep = sleep or (lambda seconds: time.sleep(seconds))
        self.last_id = 0
        self._stamp = None
        self._backlog = False
        self._problem = None

    def start(self, after: int | None = None):
        """Begin after change ``after`` (default: the current one); return the current change.

        Errors here (a missing or foreign database) are raised: a watcher must start on a
        usable file, and an operator's typo must not look like an outage.
        """
        current = self.store.current()
        self.last_id = current.version if after is None else after
        self._stamp = self._read_stamp()
        self._backlog = after is not None and after < current.version
        return current

    @property
    def problem(self) -> str | None:
        """What keeps the database from being read right now (None while it reads fine)."""
        return self._problem

    def _read_stamp(self):
        version = self.store.data_version()  # may reopen a replaced file: read it first
        return version, self.store.generation

    def follow(self, interval: float):
        """Yield each new change as it appears, checking every ``interval`` seconds; forever."""
        while True:
            changes = self.check()
            yield from changes
            if not self._backlog:
                self.sleep(interval)

    def check(self) -> list:
        """Return the changes made since the last check (empty if none or if unusable)."""
        try:
            stamp = self._read_stamp()
            if stamp == self._stamp and not self._backlog and self._problem is None:
                return []
            self._stamp = stamp
            changes = self.store.changes_after(self.last_id, limit=BATCH)
            self._backlog = len(changes) == BATCH
            if not changes:
                self._notice_replacement()
        except PipelineError as error:
            if str(error) != self._problem:
                self.warn(f"{error}; still watching")
                self._problem = str(error)
            return []
        if self._problem is not None:
            self.warn(f"database usable again: {self.store.path}")
            self._problem = None
        if changes:
            self.last_id = changes[-1].id
        return changes

    def _notice_replacement(self) -> None:
        """A file whose newest change is older than the last one seen was replaced (a restored
        backup): say so, and follow the new file from its newest change."""
        current = self.store.current()
        if current.version < self.last_id:
            self.warn(
                f"{self.store.path} was replaced: its newest change is #{current.version}, "
                f"older than #{self.last_id} seen before; following the new file"
            )
            self.last_id = current.version


class Feed:
    """The newest change id the watcher has seen; delivery threads wait here for news."""

    def __init__(self, newest: int):
        self.newest = newest
        self.closed = False
        self.ticks = 0  # how many times news was published (a new id, or the database's state)
        self._news = threading.Condition()

    def publish(self, newest: int) -> None:
        with self._news:
            self.newest = newest
            self.ticks += 1
            self._news.notify_all()

    def close(self) -> None:
        with self._news:
            self.closed = True
            self._news.notify_all()

    def wait_past(self, cursor: int) -> int | None:
        """Return the newest id once it is not ``cursor`` (above, or below after a replaced
        file); None once closed."""
        with self._news:
            self._news.wait_for(lambda: self.closed or self.newest != cursor)
            return None if self.closed else self.newest

    def wait_news(self, seen: int, timeout: float) -> int | None:
        """Return ``ticks`` once it is past ``seen``, or after ``timeout`` seconds; None once
        closed."""
        with self._news:
            self._news.wait_for(lambda: self.closed or self.ticks != seen, timeout)
            return None if self.closed else self.ticks
