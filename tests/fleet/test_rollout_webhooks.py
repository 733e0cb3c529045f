"""Rollout events reach webhooks from the centre (a real HTTP receiver on 127.0.0.1), on SQLite
and PostgreSQL: created, approved, each wave taken, paused and why, finished, aborted; signed;
in order; a receiver that was down gets them when it is back."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rolloutlib import (
    SimFleet,
    action,
    create,
    rollout_centre,  # noqa: F401 (a fixture, asked for by name)
)

SECRET = "webhook-secret-for-rollouts"
WAIT_S = 30.0


class Receiver:
    """An HTTP server that keeps what is posted to it; answers ``status`` (200 or 503)."""

    def __init__(self):
        self.posts, self.status = [], 200
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    if receiver.status == 200:
                        receiver.posts.append((dict(self.headers), body))
                    receiver.changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events_until(self, last: str, count: int = 1) -> list[dict]:
        """Wait until ``count`` events named ``last`` arrived; return every event so far."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: [json.loads(b)["event"] for _, b in self.posts].count(last) >= count,
                WAIT_S,
            )
            assert found, [json.loads(b)["event"] for _, b in self.posts]
            return [json.loads(body) for _, body in self.posts]


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def fleet(fleet_db, request, receiver):
    app = request.getfixturevalue("rollout_centre")(
        FLEET_APPROVALS=2, WEBHOOKS=receiver.url, WEBHOOK_SECRET=SECRET
    )
    sim = SimFleet(app.test_client())
    for n in range(4):
        sim.add(f"edge-{n:03}")
    return sim


def test_rollout_events_are_posted_signed_and_in_order(fleet, receiver):
    rollout = create(fleet.client, waves=[1, "100%"], reason="EU <!channel> filters").json
    rollout = action(fleet.client, rollout, "approve", "bob").json
    rollout = action(fleet.client, rollout, "start").json
    fleet.cycle_all()
    fleet.cycle_all()
    events = receiver.events_until("rollout.finished")
    assert [e["event"] for e in events] == [
        "rollout.created",
        "rollout.approved",
        "rollout.wave_taken",
        "rollout.wave_taken",
        "rollout.finished",
    ]
    assert events[1]["actor"] == "bob" and events[2]["wave"] == 1
    assert "&lt;!channel&gt;" in events[0]["text"]  # a reason cannot ping a channel
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Pipeline-Signature"] == expected
    ids = [int(headers["X-Pipeline-Event-Id"]) for headers, _ in receiver.posts]
    assert ids == sorted(set(ids))


def test_a_receiver_that_was_down_gets_the_pause_and_abort_later(fleet, receiver):
    receiver.status = 503
    rollout = create(fleet.client, waves=["100%"]).json
    rollout = action(fleet.client, rollout, "approve", "bob").json
    rollout = action(fleet.client, rollout, "start").json
    rollout = action(fleet.client, rollout, "pause", "bob", reason="odd latency").json
    rollout = action(fleet.client, rollout, "abort", reason="rethink").json
    receiver.status = 200
    action(fleet.client, create(fleet.client, selector="region=eu").json, "abort")
    events = receiver.events_until("rollout.aborted", 2)
    names = [e["event"] for e in events]
    assert names == [
        "rollout.created",
        "rollout.approved",
        "rollout.paused",
        "rollout.aborted",
        "rollout.created",
        "rollout.aborted",
    ]
    assert events[2]["why"] == "odd latency" and events[2]["actor"] == "bob"
