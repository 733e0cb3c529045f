"""Rollouts reach real nodes (issue 18): ``notify --fleet --accept-rollouts`` processes take the
desire from the real centre's signed answer and apply it through their own store, or report a
conflict when the node's pipeline changed locally since the wave started."""

import json
import urllib.request

import pytest
from fleetlib import FLEET_SECRET, FleetServer
from hooklib import WAIT, Notifier, until
from weblib import basic, write_users

from webapp.accounts.signatures import derive_node_key
from webapp.core.store import PipelineStore

pytestmark = pytest.mark.slow


@pytest.fixture
def centre(tmp_path):
    users = write_users(tmp_path / "users.htpasswd")
    centre = FleetServer(tmp_path / "fleet.db", tmp_path / "centre.db",
                         env={"PIPELINE_USERS_FILE": str(users)})  # fmt: skip
    yield centre.start()
    centre.stop()


def call(url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def node_view(centre, name):
    return call(f"{centre.url}/api/fleet/nodes/{name}")


def start_rollout(centre, pipeline_type):
    """Create a rollout over every node (one operator approves by default) and start it."""
    rollouts = f"{centre.url}/api/fleet/rollouts"
    body = {"pipeline_type": pipeline_type, "reason": "EU filters", "waves": ["100%"]}
    made = call(rollouts, body, basic())
    started = call(
        f"{rollouts}/{made['id']}/start", {}, {**basic(), "If-Match": f'"{made["version"]}"'}
    )
    assert started["status"] == "running", started
    return made["id"]


def node_db(db):
    """The node's sensor database (conftest's db_path), its pipeline set once (#1, raw)."""
    with PipelineStore(db) as store:
        store.set("raw", updated_by="ops", reason="start", source="cli")
    return db


def start_node(db, centre, name, *extra):
    notifier = Notifier(
        db,
        *("--fleet", centre.url, "--node", name, "--heartbeat", "5", "--max-backoff", "2", *extra),
        env={"PIPELINE_FLEET_KEY": derive_node_key(FLEET_SECRET, name)},
    )
    notifier.wait_for("acknowledged up to")
    return notifier


def test_a_node_that_accepts_rollouts_applies_the_desire_and_the_rollout_finishes(centre, db_path):
    db = node_db(db_path)
    notifier = start_node(db, centre, "edge-001", "--accept-rollouts")
    try:
        rollout = start_rollout(centre, "filtered")
        notifier.wait_for(f"rollout {rollout} applied")
        with PipelineStore(db) as store:
            change = store.current()
        assert change.pipeline_type == "filtered"
        assert change.updated_by == f"fleet:alice (rollout {rollout})"
        assert change.metadata["rollout"] == rollout and change.source == "fleet"
        assert change.reason == "EU filters"
        until(lambda: call(f"{centre.url}/api/fleet/rollouts/{rollout}")["status"] == "finished")
        assert node_view(centre, "edge-001")["current"]["id"] == change.id
    finally:
        notifier.kill()


def test_a_local_change_since_the_wave_started_is_a_conflict_not_an_overwrite(centre, db_path):
    db = node_db(db_path)
    start_node(db, centre, "edge-002").stop()  # known to the centre at change #1
    rollout = start_rollout(centre, "filtered")  # expect_id fixed now: #1
    with PipelineStore(db) as store:
        local = store.set("aggregated", updated_by="bob", reason="local fix", source="web").change
    notifier = start_node(db, centre, "edge-002", "--accept-rollouts")
    try:
        notifier.wait_for(f"rollout {rollout} conflict")
        nodes = call(f"{centre.url}/api/fleet/rollouts/{rollout}/nodes?limit=10")["nodes"]
        until(lambda: node_view(centre, "edge-002")["sync"] == "conflict", WAIT, "conflict")
        assert [n["node"] for n in nodes] == ["edge-002"]
        with PipelineStore(db) as store:
            assert store.current() == local  # the local change won
    finally:
        notifier.kill()


def test_a_node_that_did_not_opt_in_gets_no_desire(centre, db_path):
    db = node_db(db_path)
    notifier = start_node(db, centre, "edge-003")
    try:
        rollout = start_rollout(centre, "filtered")
        heard = node_view(centre, "edge-003")["last_report_at"]
        until(lambda: node_view(centre, "edge-003")["last_report_at"] != heard, WAIT, "heartbeat")
        assert f"rollout {rollout}" not in notifier.log()
        with PipelineStore(db) as store:
            assert store.current().pipeline_type == "raw"
        assert node_view(centre, "edge-003")["sync"] == "pending"
    finally:
        notifier.kill()
