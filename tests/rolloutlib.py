"""Helpers for the rollout tests: a centre app with two operators, and simulated nodes that
report through signed requests and apply a desire the way a node's store does (compare-and-set
on ``expect_id``)."""

from dataclasses import dataclass, field

import pytest
from fleetlib import FLEET_SECRET, post, record, report
from weblib import basic, write_users

ROLLOUTS = "/api/fleet/rollouts"


def make_rollout_app(fleet_db, tmp_path, **config):
    """Return a centre app on ``fleet_db`` with alice and bob as operators."""
    from webapp.fleet import create_app

    return create_app(
        {
            "TESTING": True,
            "FLEET_DB": fleet_db,
            "FLEET_SECRET": FLEET_SECRET,
            "SECRET_KEY": "test-secret",
            "STATE_DIR": str(tmp_path / "state"),
            "USERS_FILE": str(write_users(tmp_path / "users.htpasswd")),
            "LOGIN_THROTTLE_DIR": str(tmp_path / "throttle"),
            "LOGIN_REFUSAL_PAUSE": 0,
            **config,
        }
    )


@pytest.fixture
def rollout_centre(fleet_db, tmp_path, monkeypatch):
    """Make centre apps on the test's store (``make(**config)``); their stores closed after.

    A module asks for it by name from a fixture that takes ``fleet_db`` (so the test runs on
    both backends)."""
    for name in ("PIPELINE_FLEET_DB", "PIPELINE_FLEET_SECRET", "PIPELINE_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    apps = []

    def make(**config):
        app = make_rollout_app(fleet_db, tmp_path, **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        held = app.extensions.get("fleet.rollout_webhooks")
        if held and held[1]:
            held[1].stop()
        held = app.extensions.get("fleet.store")
        if held:
            held[1].close()


@dataclass
class SimNode:
    """A node as the centre sees it: its change id and type, its report counter."""

    name: str
    labels: dict
    change_id: int = 1
    pipeline_type: str = "raw"
    seq: int = 0
    accept: bool = True
    outcome: dict | None = None
    refuses: tuple = ()  # types its table's CHECK refuses (a foreign CHECK list)
    applied: list = field(default_factory=list)


class SimFleet:
    """Nodes reporting to a Flask test client of the centre."""

    def __init__(self, client):
        self.client = client
        self.nodes: dict[str, SimNode] = {}

    def add(self, name, accept=True, **labels):
        self.nodes[name] = SimNode(name, labels or {"region": "eu"}, accept=accept)
        return self.report(name)

    def report(self, name):
        node = self.nodes[name]
        node.seq += 1
        body = report(
            name,
            current=record(node.change_id, node.pipeline_type),
            labels=node.labels,
            seq=node.seq,
        )
        body["accept_rollouts"] = node.accept
        body["rollout"], node.outcome = node.outcome, None
        answer = post(self.client, body)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.json

    def local_change(self, name, pipeline_type):
        node = self.nodes[name]
        node.change_id += 1
        node.pipeline_type = pipeline_type

    def apply(self, name, desired) -> str:
        """Apply a desire as the node's store would; remember the outcome for the next report."""
        node = self.nodes[name]
        if desired["pipeline_type"] in node.refuses:
            outcome, change = "error", None
            message = f"the table refuses {desired['pipeline_type']} (CHECK constraint failed)"
        elif desired["expect_id"] != node.change_id:
            outcome, change, message = "conflict", None, f"changed locally (now {node.change_id})"
        else:
            self.local_change(name, desired["pipeline_type"])
            outcome, change, message = "applied", node.change_id, None
            node.applied.append(desired["rollout"])
        node.outcome = {
            "rollout": desired["rollout"],
            "outcome": outcome,
            "change_id": change,
            "message": message,
        }
        return outcome

    def cycle(self, name):
        """Report; apply a desire if the answer carries one and report at once; return it."""
        answer = self.report(name)
        desired = answer.get("desired")
        if desired is not None:
            self.apply(name, desired)
            self.report(name)
        return desired

    def cycle_all(self):
        return {name: self.cycle(name) for name in sorted(self.nodes)}


def create(client, who="alice", **body):
    body = {"pipeline_type": "filtered", "reason": "test rollout", **body}
    return client.post(ROLLOUTS, json=body, headers=basic(who))


def action(client, rollout, name, who="alice", version=None, **body):
    version = rollout["version"] if version is None else version
    return client.post(
        f"{ROLLOUTS}/{rollout['id']}/{name}",
        json=body,
        headers={**basic(who), "If-Match": f'"{version}"'},
    )


def fetch(client, rollout_id):
    return client.get(f"{ROLLOUTS}/{rollout_id}").json
