"""The fleet target: report this node's pipeline and changes to the centre, signed, at least once
and in id order, through outages of any length (docs/fleet.md).

A change is reported at once (the watcher publishes it); otherwise a heartbeat goes every
``max(--heartbeat, next_report_s)`` seconds ±20 %. Each report carries the changes after the
position the centre acknowledged (≤ 500; a longer backlog goes in the next posts at once), and a
failed report is retried with jittered backoff, rebuilt and signed anew at each attempt. The
centre's ``acknowledged_id`` is authoritative: a restored database (node's or centre's) resumes
where the centre says. Position and report counter live in the notifier's state file. No Flask.
"""

import random
import time

from webapp.core.errors import PipelineError
from webapp.notify import report, rollout
from webapp.notify.targets import LOG, StopRequested, Target, elapsed_ms, retrying
from webapp.notify.webhooks import exchange

JITTER = 0.2


class FleetReporter(Target):
    """Report to the fleet centre; its position is the centre's acknowledged change id."""

    def __init__(self, notifier, target):
        saved = notifier.state.entry(target.state_key)
        super().__init__(notifier, target.label, saved.get("acknowledged_id"))
        self.target = target
        self.seq = saved.get("seq", 0)
        self.rollout = None  # the outcome of the last desire, until a report carried it
        self.stuck = False  # the last report's answer took nothing new
        self.last_desire = None  # the same desire again is reported at the heartbeat's pace
        self.urgent = False  # an outcome to report at once

    def follow(self, store) -> None:
        feed = self.notifier.feed
        if self.cursor is None:
            LOG.info("%s: first report; the centre's answer sets the position", self.label)
        else:
            LOG.info("%s: reporting the changes after #%d (its state)", self.label, self.cursor)
        while True:
            seen = feed.ticks
            outcome = self.report_until_acknowledged(store)
            if outcome is None:
                return
            if outcome[0].desired is not None:
                self.take_desire(store, outcome[0].desired)
            if self.again_at_once(*outcome):
                continue
            ack = outcome[0]
            delay = max(self.target.heartbeat, ack.next_report_s)
            deadline = time.monotonic() + delay * random.uniform(1 - JITTER, 1 + JITTER)
            while (remaining := deadline - time.monotonic()) > 0:
                news = feed.wait_news(seen, remaining)
                if news is None:
                    return
                if news != seen:
                    break

    def again_at_once(self, ack, before, sent_newest) -> bool:
        """True when the centre holds less than this node told it of and the answer moved (a
        backlog, a restored centre); one report more when it did not, then the heartbeat."""
        more = ack.acknowledged_id < sent_newest
        progress = ack.acknowledged_id != before
        at_once = more and (progress or not self.stuck)
        self.stuck = more and not progress
        return at_once or self.urgent

    def take_desire(self, store, desired: dict) -> None:
        """Apply a rollout's desire (the answer carrying it was signed with this node's key)."""
        if not self.target.accept_rollouts:
            LOG.warning(
                "%s: the centre sent a rollout, not applied (no --accept-rollouts)", self.label
            )
            return
        self.rollout = rollout.apply_desire(store, desired)
        # A centre that sends the same desire again (an operator's retry, or a bug) is answered
        # at the heartbeat's pace, never in a tight loop.
        self.urgent, self.last_desire = desired != self.last_desire, desired
        if self.rollout is None:
            self.urgent = False
            LOG.warning("%s: the centre sent a desire without a rollout id: ignored", self.label)
            return
        LOG.info(
            "%s: rollout %d %s: %s",
            *(
                self.label,
                self.rollout["rollout"],
                self.rollout["outcome"],
                self.rollout["message"],
            ),
        )

    def report_until_acknowledged(self, store):
        """Report until the centre acknowledges; return (acknowledgement, position before,
        newest id sent), or None if the notifier stops first."""
        notifier, target = self.notifier, self.target
        before = self.cursor

        def attempt():
            if notifier.stopping.is_set():
                raise StopRequested
            self.seq += 1
            current = report.current_record(store)
            changes = self.changes_after(store, before) if "error" not in current else []
            data, carried = report.body(target, self.seq, current, changes, self.rollout)
            started = time.monotonic()
            headers = report.signed_headers(target.key, data)
            answer = exchange(target.centre, data, headers, notifier.timeout)
            ack = report.acknowledgement(answer, target.key, int(headers["webhook-timestamp"]))
            self.log_acknowledged(ack, carried, started)
            return ack, carried, report.newest_id(current, carried)

        def failed(retry):
            self.failed += 1
            notifier.changed()
            LOG.warning(
                "%s: report %d not acknowledged (%s, attempt %d); next attempt in %.1f s",
                *(self.label, self.seq, retry.outcome.exception(), retry.attempt_number),
                retry.next_action.sleep,
            )

        try:
            ack, carried, sent_newest = retrying(notifier, failed, slow=report.ReportInvalid)(
                attempt
            )
        except StopRequested:
            return None
        self.delivered += len([change for change in carried if change["id"] > (before or 0)])
        self.last_delivery = time.time()
        self.rollout, self.urgent = None, False
        self.save(target.state_key, ack.acknowledged_id, seq=self.seq)
        return ack, before, sent_newest

    def changes_after(self, store, position) -> list:
        """Return the records after ``position`` (none while the centre's is unknown)."""
        if position is None:
            return []
        try:
            return [report.record(c) for c in store.changes_after(position, report.MAX_CHANGES)]
        except PipelineError:
            return []  # the current record says why; the next report tries again

    def log_acknowledged(self, ack, carried, started) -> None:
        level = LOG.info if carried or ack.acknowledged_id != self.cursor else LOG.debug
        level(
            "%s: report %d acknowledged up to #%d (%d changes, HTTP 200 in %.0f ms)",
            *(self.label, self.seq, ack.acknowledged_id, len(carried), elapsed_ms(started)),
        )
