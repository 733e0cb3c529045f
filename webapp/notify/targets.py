"""What every target of the notifier shares (a webhook, the fleet centre): a thread with its
own connection and position, its counters for the metrics, saving its position in the state
file, and the jittered backoff that retries an attempt until it is acknowledged. No Flask.
"""

import logging
import threading
import time
from dataclasses import dataclass

from webapp.notify.webhooks import DeliveryFailed

LOG = logging.getLogger("pipeline.notify")


class StopRequested(BaseException):
    """SIGTERM or SIGINT: finish the attempt in flight, then exit 0."""


@dataclass(frozen=True)
class WebhookStats:
    label: str
    acknowledged: int
    delivered: int
    failed: int
    last_delivery: float | None


class Target(threading.Thread):
    """One target's thread: ``follow(store)`` runs until the notifier stops; a crash is kept
    for the watch loop (which ends the process), never swallowed."""

    def __init__(self, notifier, label: str, cursor: int | None):
        super().__init__(name=f"notify {label}", daemon=True)
        self.notifier = notifier
        self.label = label
        self.cursor = cursor
        self.delivered = 0
        self.failed = 0
        self.last_delivery = None
        self.crashed = None

    def stats(self) -> WebhookStats:
        acknowledged = self.cursor or 0
        return WebhookStats(
            self.label, acknowledged, self.delivered, self.failed, self.last_delivery
        )

    def run(self) -> None:
        try:
            with self.notifier.open_store() as store:
                self.follow(store)
        except BaseException as error:  # a bug: the watch loop sees it and ends the process
            self.crashed = error
            LOG.exception("%s: delivery stopped by an internal error", self.label)

    def follow(self, store) -> None:
        raise NotImplementedError

    def save(self, key: str, change_id: int, **extra) -> None:
        """Move to ``change_id`` and save it; a state file that cannot be written is logged."""
        self.cursor = change_id
        self.notifier.changed()
        state = self.notifier.state
        try:
            state.record(key, self.label, change_id, **extra)
        except OSError as error:
            LOG.error(
                "%s: cannot save the state file %s (%s); after a restart, changes delivered "
                "since the last save would be posted again",
                *(self.label, state.path, error.strerror or error),
            )


def retrying(notifier, before_sleep, slow=()):
    """Return a tenacity ``Retrying`` that repeats an attempt until it raises no DeliveryFailed.

    "Equal jitter": the n-th wait lies between half and all of min(0.5 s * 2^(n-1), max), so
    receivers coming back are not hit by every notifier at once, nor hammered at 0 s. Failures
    of a type in ``slow`` (a receiver calling our request a bug) wait the longest at once.
    No stop condition: what comes later waits behind this attempt, however long it takes.
    """
    import tenacity

    half = notifier.max_backoff / 2
    backoff = tenacity.wait_exponential(multiplier=0.25, max=half) + (
        tenacity.wait_random_exponential(multiplier=0.25, max=half)
    )

    def wait(retry_state):
        if slow and isinstance(retry_state.outcome.exception(), slow):
            return notifier.max_backoff
        return backoff(retry_state)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(DeliveryFailed),
        wait=wait,
        before_sleep=before_sleep,
        sleep=notifier.stopping.wait,  # a stop cuts the wait short; the attempt then ends it
        reraise=True,
    )


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
