"""Rollout events to the same webhooks the notifier posts changes to (``PIPELINE_WEBHOOKS``,
signed with ``PIPELINE_WEBHOOK_SECRET``), from the centre: created, approved, wave taken, paused
(and why), finished, aborted.

The audit trail is the outbox: a thread per centre process posts the audit records past a cursor
kept in the store (``meta`` row ``webhook:audit``), then moves the cursor. One process at a time
holds a lease (``webhook:lease``, 30 s) so several workers or hosts do not all post; a crashed
holder's lease runs out. At least once, in order: a failed post is tried again (the same
``X-Pipeline-Event-Id``, the audit record's id, lets a receiver drop a repeat). Events the gates
write while ingesting reports go out the same way as operators' actions. Delivery, payload
checks and signatures are webapp/notify/webhooks.py's.
"""

import json
import os
import threading
import time

from sqlalchemy import select, update

from webapp.core.config import webhook_secret
from webapp.core.errors import InvalidInput
from webapp.core.timefmt import iso
from webapp.notify import webhooks

from ..engine import run_read, run_write, upsert
from ..nodes import from_ms
from ..schema import meta
from .tables import rollout_audit

EVENTS = {
    "create": "created",
    "approve": "approved",
    "wave_end": "wave_taken",
    "pause": "paused",
    "finish": "finished",
    "abort": "aborted",
}
CURSOR, LEASE = "webhook:audit", "webhook:lease"
LEASE_MS = 30_000
BATCH = 50
IDLE_S = 5.0  # how often an idle process looks for events the gates wrote (a cheap read)
EXTENSION = "fleet.rollout_webhooks"


def event_body(row) -> bytes:
    """Return the JSON posted for one audit record (strict, ASCII, with a one-line ``text``)."""
    detail = json.loads(row.detail)
    event = EVENTS[row.action]
    text = f"Rollout {row.rollout_id} {event.replace('_', ' ')} by {row.actor}"
    if detail.get("wave"):
        text += f" (wave {detail['wave']})"
    if detail.get("why"):
        text += f": {detail['why']}"
    body = {
        "event": f"rollout.{event}",
        "rollout": row.rollout_id,
        "actor": row.actor,
        "at": iso(from_ms(row.at_ms)),
        **detail,
        "text": webhooks._shown(text),  # noqa: SLF001 (the notifier's chat-safe sentence rule)
    }
    return json.dumps(webhooks.json_safe(body), allow_nan=False, separators=(",", ":")).encode()


class Deliverer:
    """Posts this store's rollout events to ``hooks``; one thread per process."""

    def __init__(self, engine, hooks, secret, logger):
        self.engine, self.hooks, self.secret, self.logger = engine, hooks, secret, logger
        self.wake = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self.run, name="rollout-webhooks", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """End the thread (tests; a server's process simply exits)."""
        self.stopped = True
        self.wake.set()
        self.thread.join(timeout=webhooks.TIMEOUT * 2)

    def run(self) -> None:
        while not self.stopped:
            self.wake.wait(IDLE_S)
            if self.stopped:
                return
            self.wake.clear()
            try:
                while self.deliver_batch():
                    pass
            except Exception as error:  # noqa: BLE001 (a thread must outlive any one failure)
                self.logger.warning("rollout webhooks: %s", str(error).splitlines()[0][:200])

    def claim(self, now: int) -> int | None:
        """Take the lease if it is free (or ran out); return the cursor, or None."""

        def work(connection):
            rows = dict(
                connection.execute(
                    select(meta.c.name, meta.c.value).where(meta.c.name.in_((CURSOR, LEASE)))
                ).all()
            )
            if rows.get(LEASE, 0) > now:
                return None
            for name in (CURSOR, LEASE):
                upsert(connection, meta, {"name": name, "value": 0}, ("name",), {"value": 0})
            connection.execute(
                update(meta).where(meta.c.name == LEASE).values(value=now + LEASE_MS)
            )
            return rows.get(CURSOR, 0)

        return run_write(self.engine, work)

    def release(self, cursor: int) -> None:
        def work(connection):
            connection.execute(update(meta).where(meta.c.name == CURSOR).values(value=cursor))
            connection.execute(update(meta).where(meta.c.name == LEASE).values(value=0))

        run_write(self.engine, work)

    def deliver_batch(self) -> bool:
        """Post the next events; return True when a full batch went (there may be more)."""
        cursor = self.claim(int(time.time() * 1000))
        if cursor is None:
            return False
        query = (
            select(rollout_audit)
            .where(rollout_audit.c.id > cursor, rollout_audit.c.action.in_(tuple(EVENTS)))
            .order_by(rollout_audit.c.id)
            .limit(BATCH)
        )
        rows = run_read(self.engine, lambda c: c.execute(query).all())
        delivered = cursor
        try:
            for row in rows:
                body = event_body(row)
                headers = {"Content-Type": "application/json", "User-Agent": webhooks.USER_AGENT,
                           "X-Pipeline-Event-Id": str(row.id)}  # fmt: skip
                if self.secret:
                    headers["X-Pipeline-Signature"] = webhooks.signature(self.secret, body)
                for hook in self.hooks:
                    webhooks.post(hook, body, headers)
                delivered = row.id
        except webhooks.DeliveryFailed as error:
            self.logger.warning(
                "rollout webhook events after %s not delivered: %s", delivered, error
            )
            self.release(delivered)
            return False
        self.release(delivered)
        return len(rows) == BATCH


def deliverer(app):
    """Return this process's deliverer (started on first use), or None without webhooks."""
    held = app.extensions.get(EXTENSION)
    if held is not None and held[0] == os.getpid():
        return held[1]
    try:
        hooks = webhooks.parse_webhooks(webhooks.split_setting(app.config.get("WEBHOOKS")))
    except InvalidInput as error:  # said once per process; the centre serves on without them
        app.logger.warning("rollout events are not posted: PIPELINE_WEBHOOKS %s", error)
        hooks = []
    found = None
    if hooks:
        from ..db import get_store

        found = Deliverer(get_store().engine, hooks, webhook_secret(app.config), app.logger)
    app.extensions[EXTENSION] = (os.getpid(), found)
    return found


def send_events(app, records) -> None:
    """Wake the deliverer after an action (the records are in the audit trail already)."""
    found = deliverer(app)
    if found is not None and records:
        found.wake.set()


def init_app(app) -> None:
    """Start the deliverer with the first request of each process (after gunicorn's fork)."""
    from flask import current_app

    app.before_request(lambda: deliverer(current_app._get_current_object()) and None)
