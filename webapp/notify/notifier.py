"""Post every change of ``pipeline_config`` to webhooks: in id order, at least once, whoever
wrote it; a restart resumes after the last acknowledged change.

One watcher (watch.py: one ``PRAGMA data_version`` per idle check, no transaction held open)
publishes the newest change id. Each webhook has its own thread, cursor and connection: it reads
the changes after its cursor and posts them one at a time, retrying each with jittered
exponential backoff until a 2xx, so order is kept and a dead webhook holds back only itself.
After each acknowledgement its cursor is saved (notify_state.py). Nothing here writes to the
database. No Flask.
"""

import itertools
import os
import threading
import time
from dataclasses import dataclass

from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.watch import BATCH, Feed, Watcher
from webapp.notify import webhooks
from webapp.notify.reporter import FleetReporter
from webapp.notify.targets import LOG, StopRequested, Target, WebhookStats, elapsed_ms, retrying

__all__ = ["LOG", "Notifier", "Snapshot", "StopRequested", "WebhookStats"]
READ_BATCH = 100  # changes read per statement by a delivery thread


@dataclass(frozen=True)
class Snapshot:
    """What the metrics report, read at one moment."""

    newest: int
    database_up: bool
    last_check: float
    webhooks: tuple


class Delivery(Target):
    """Post one webhook's changes in id order, each until a 2xx; its own cursor and connection."""

    def __init__(self, notifier, webhook, cursor: int):
        super().__init__(notifier, webhook.label, cursor)
        self.webhook = webhook

    def follow(self, store) -> None:
        label, problem = self.webhook.label, None
        while True:
            newest = self.notifier.feed.wait_past(self.cursor)
            if newest is None:
                return
            if newest < self.cursor:
                LOG.warning(
                    "%s: the database's newest change is #%d, older than #%d already handled "
                    "(the file was replaced?): posting the changes after #%d",
                    label,
                    newest,
                    self.cursor,
                    newest,
                )
                self._done(newest)
                continue
            try:
                changes = store.changes_after(self.cursor, limit=READ_BATCH)
            except PipelineError as error:
                if str(error) != problem:
                    LOG.warning("%s: cannot read the changes to post (%s); retrying", label, error)
                    problem = str(error)
                if self.notifier.stopping.wait(self.notifier.interval):
                    return
                continue
            problem = None
            due = [change for change in changes if change.id <= newest]
            if not due:  # the rows up to ``newest`` are gone (deleted, or the file replaced)
                self._done(newest)
                continue
            for change in due:
                # previous: as its metadata records it, else the row before's type (Change).
                if not self._deliver(change, change.previous):
                    return
                self._done(change.id)

    def _deliver(self, change, previous) -> bool:
        """Post ``change`` until a 2xx; False if the notifier stops first."""
        notifier, label = self.notifier, self.webhook.label
        body = webhooks.payload(change, previous)
        numbers = itertools.count(1)

        def attempt():
            if notifier.stopping.is_set():
                raise StopRequested
            number, started = next(numbers), time.monotonic()
            # Built per attempt: a Standard Webhooks signature carries the time it was made.
            headers = webhooks.headers(change.id, body, notifier.secret, self.webhook)
            status = webhooks.post(self.webhook, body, headers, notifier.timeout)
            self.delivered += 1
            self.last_delivery = time.time()
            LOG.info(
                "%s: change #%d delivered (HTTP %d in %.0f ms, attempt %d)",
                *(label, change.id, status, elapsed_ms(started), number),
            )

        def failed(retry):
            self.failed += 1
            notifier.changed()
            LOG.warning(
                "%s: change #%d not delivered (%s, attempt %d); next attempt in %.1f s",
                label,
                change.id,
                retry.outcome.exception(),
                retry.attempt_number,
                retry.next_action.sleep,
            )

        try:
            retrying(notifier, failed)(attempt)
        except StopRequested:
            return False
        return True

    def _done(self, change_id: int) -> None:
        self.save(self.webhook.key, change_id)


def check_from_id(from_id, newest: int) -> None:
    """Refuse a ``--from-id`` past the newest change (the notifier would wait for ids to come)."""
    if from_id is not None and from_id > newest:
        raise InvalidInput(f"--from-id {from_id} is past the newest change (#{newest})")


class Notifier:
    """Watch the database; run one :class:`Delivery` per webhook (and a
    :class:`FleetReporter` for the fleet centre) until stopped."""

    def __init__(
        self,
        open_store,
        hooks,
        state,
        *,
        secret=None,
        interval=1.0,
        from_id=None,
        max_backoff=60.0,
        timeout=webhooks.TIMEOUT,
        fleet=None,
    ):
        self.open_store = open_store  # a new PipelineStore: one per thread
        self.webhooks = list(hooks)
        self.fleet = fleet  # a webapp.notify.fleet.FleetTarget, or None
        self.state = state
        self.secret = secret
        self.interval = interval
        self.from_id = from_id
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.stopping = threading.Event()
        self.feed = None
        self.deliveries = []
        self.store = None
        self.watcher = None
        self.database_up = True
        self.last_check = time.time()
        self.after_check = None  # called with True when something changed since the last call
        self._news = threading.Event()

    def start(self) -> None:
        """Open the database (it must be usable now: a typo is not an outage), start each webhook
        where its state says (else at the newest change, or after ``from_id``), save that."""
        self.store = self.open_store()
        self.watcher = Watcher(self.store, warn=lambda line: LOG.warning("%s", line))
        newest = self.watcher.start().version
        check_from_id(self.from_id, newest)
        self.feed = Feed(newest)
        self.state.database = os.path.abspath(self.store.path)
        saved_database = self.state.saved_database
        if saved_database is not None and saved_database != self.state.database:
            LOG.warning(
                "the state file %s was written for %s, not %s; using it anyway",
                *(self.state.path, saved_database, self.state.database),
            )
        for webhook in self.webhooks:
            cursor = self.state.acknowledged(webhook.key)
            origin = "its state"
            if cursor is None:
                cursor = newest if self.from_id is None else self.from_id
                origin = "the newest change" if self.from_id is None else "--from-id"
            try:
                self.state.record(webhook.key, webhook.label, cursor)
            except OSError as error:
                raise InvalidInput(
                    f"cannot write the state file {self.state.path} ({error.strerror or error})"
                ) from None
            LOG.info("%s: posting the changes after #%d (%s)", webhook.label, cursor, origin)
            self.deliveries.append(Delivery(self, webhook, cursor))
        if self.fleet is not None:
            self.deliveries.append(FleetReporter(self, self.fleet))
        for delivery in self.deliveries:
            delivery.start()
        if not self.webhooks and self.fleet is None:
            LOG.warning(
                "no webhook configured (--webhook URL or PIPELINE_WEBHOOKS): nothing is posted"
            )
        LOG.info(
            "watching %s every %g s (newest change #%d); state in %s",
            *(self.store.path, self.interval, newest, self.state.path),
        )

    def run(self) -> None:
        """Check the database every ``interval`` until stopped; raise if a delivery broke."""
        while not self.stopping.is_set():
            changes = self.watcher.check()
            was_up, self.database_up = self.database_up, self.watcher.problem is None
            self.last_check = time.time()
            if self.watcher.last_id != self.feed.newest or was_up != self.database_up:
                self.feed.publish(self.watcher.last_id)  # the fleet reports either at once
                self.changed()
            broken = next((d for d in self.deliveries if d.crashed is not None), None)
            if broken is not None:
                raise PipelineError(
                    f"delivery to {broken.label} stopped by an internal error "
                    f"({type(broken.crashed).__name__}, logged above); restart to resume"
                )
            if self.after_check is not None:
                news = self._news.is_set()
                self._news.clear()
                self.after_check(news)
            if len(changes) < BATCH:  # else a backlog: read on at once
                self.stopping.wait(self.interval)

    def changed(self) -> None:
        """Note news for the metrics file (a delivery, a failure, a new change)."""
        self._news.set()

    def stop(self) -> None:
        self.stopping.set()
        if self.feed is not None:
            self.feed.close()

    def close(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for attempts in flight, then let go of the database."""
        deadline = time.monotonic() + grace
        for delivery in self.deliveries:
            if delivery.is_alive():  # a stop during start() may leave some never started
                delivery.join(max(0.0, deadline - time.monotonic()))
        if self.store is not None:
            self.store.close()

    def alive(self) -> bool:
        """True while the watch loop runs (``/healthz``): it checked within a few intervals."""
        late = time.time() - self.last_check > 3 * self.interval + 30
        return not late and not any(d.crashed is not None for d in self.deliveries)

    def snapshot(self) -> Snapshot:
        newest = self.feed.newest if self.feed is not None else 0
        stats = tuple(delivery.stats() for delivery in self.deliveries)
        return Snapshot(newest, self.database_up, self.last_check, stats)
