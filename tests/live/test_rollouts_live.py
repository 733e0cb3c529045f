"""Rollouts with real processes (issue 18), on SQLite and PostgreSQL: the centre under gunicorn
(two workers), real node databases with real notifiers (``notify --fleet --accept-rollouts``).

The centre restarted mid-rollout keeps its state and the waves continue; a node killed while its
apply waits for its database loses nothing and applies once; a type the node's table refuses (a
foreign CHECK list) is the node's error and pauses the wave; two operators pausing and aborting
at once over HTTP: one wins, the other is told who acted.
(REPORTER's tests/live/test_fleet_desires.py covers an applied desire and a local change.)"""

import json
import os
import signal
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest
from fleetlib import FLEET_SECRET, FleetServer
from hooklib import WAIT, Notifier, until
from pglib import postgres, store_setting  # noqa: F401 (postgres: a fixture)
from weblib import basic, write_users

from webapp.accounts.signatures import derive_node_key
from webapp.core.store import PipelineStore

pytestmark = pytest.mark.slow
ROLLOUT_WAIT = 60.0  # waves of nodes heartbeating every 5 s (±20 %), on a loaded machine
FOREIGN_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT NOT "
    "NULL CHECK(pipeline_type IN ('raw', 'schematized', 'aggregated', 'emergency')), "
    "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def centre(request, tmp_path):
    setting = store_setting(request.param, request, tmp_path, migrated=True)
    fleet_db = next(setting)
    users = write_users(tmp_path / "users.htpasswd")
    server = FleetServer(fleet_db, tmp_path / "centre.db", env={"PIPELINE_USERS_FILE": str(users)})
    server.start()
    yield server
    server.stop()
    next(setting, None)


def call(url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        sent.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(sent, timeout=30) as answer:
        return json.loads(answer.read())


def rollout_of(centre, rollout_id):
    return call(f"{centre.url}/api/fleet/rollouts/{rollout_id}")


def start_rollout(centre, pipeline_type, waves):
    base = f"{centre.url}/api/fleet/rollouts"
    made = call(base, {"pipeline_type": pipeline_type, "reason": "live", "waves": waves}, basic())
    started = call(
        f"{base}/{made['id']}/start", {}, {**basic(), "If-Match": f'"{made["version"]}"'}
    )
    assert started["status"] == "running", started
    return started


def node_db(path, table=None):
    """A node's database (the sensor writer's table), its pipeline set once (#1, raw);
    ``table``: a foreign pipeline_config made first."""
    path.parent.mkdir(exist_ok=True)  # a notifier's state file lives beside its database
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE sensor_readings (sensor_id TEXT, value REAL)")
    if table:
        connection.execute(table)
    connection.commit()
    connection.close()
    with PipelineStore(path) as store:
        store.set("raw", updated_by="ops", reason="start", source="cli")
    return path


def start_node(db, centre, name, **env):
    notifier = Notifier(
        db,
        *("--fleet", centre.url, "--node", name, "--heartbeat", "5", "--max-backoff", "2"),
        "--accept-rollouts",
        env={"PIPELINE_FLEET_KEY": derive_node_key(FLEET_SECRET, name), **env},
    )
    notifier.wait_for("acknowledged up to")
    return notifier


def fleet_changes(db) -> int:
    with PipelineStore(db) as store:
        return sum(1 for change in store.history(limit=100) if change.source == "fleet")


def test_the_centre_restarted_mid_rollout_keeps_its_state_and_the_waves_continue(centre, tmp_path):
    dbs = {f"edge-{n}": node_db(tmp_path / f"node-{n}" / "sensor.db") for n in range(3)}
    notifiers = {name: start_node(db, centre, name) for name, db in dbs.items()}
    try:
        rollout = start_rollout(centre, "filtered", [1, "100%"])
        nodes = call(f"{centre.url}/api/fleet/rollouts/{rollout['id']}/nodes?wave=1")["nodes"]
        canary = nodes[0]["node"]
        notifiers[canary].wait_for(f"rollout {rollout['id']} applied")
        centre.stop()  # mid-rollout: wave 2's nodes have not been told yet, or just were
        centre.start()
        until(
            lambda: rollout_of(centre, rollout["id"])["status"] == "finished",
            ROLLOUT_WAIT,
            "the rollout to finish after the restart",
        )
        for name, db in dbs.items():
            with PipelineStore(db) as store:
                assert store.current().pipeline_type == "filtered", name
            assert fleet_changes(db) == 1, name  # applied once, never twice
    finally:
        for notifier in notifiers.values():
            notifier.kill()


def test_a_node_killed_while_applying_loses_nothing_and_applies_once(centre, tmp_path):
    db = node_db(tmp_path / "node.db")
    notifier = start_node(db, centre, "edge-k", PIPELINE_WRITE_TIMEOUT="60")
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the node's writes wait: its apply cannot finish
        heard = call(f"{centre.url}/api/fleet/nodes/edge-k")["last_report_at"]
        rollout = start_rollout(centre, "aggregated", ["100%"])
        # The next report's answer carries the desire; the node then waits on the lock.
        until(
            lambda: call(f"{centre.url}/api/fleet/nodes/edge-k")["last_report_at"] != heard,
            WAIT,
            "a report after the start",
        )
        os.kill(notifier.process.pid, signal.SIGKILL)
        notifier.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert fleet_changes(db) == 0  # nothing half-written
    assert rollout_of(centre, rollout["id"])["progress"][0]["pending"] == 1
    again = start_node(db, centre, "edge-k")
    try:
        again.wait_for(f"rollout {rollout['id']} applied")
        until(
            lambda: rollout_of(centre, rollout["id"])["status"] == "finished",
            ROLLOUT_WAIT,
            "the rollout to finish",
        )
        assert fleet_changes(db) == 1
        with PipelineStore(db) as store:
            newest = store.current()
        assert newest.pipeline_type == "aggregated"
        assert call(f"{centre.url}/api/fleet/nodes/edge-k")["current"]["id"] == newest.id
    finally:
        again.kill()


def test_a_type_the_nodes_table_refuses_is_its_error_and_the_wave_pauses(centre, tmp_path):
    db = node_db(tmp_path / "foreign.db", FOREIGN_TABLE)
    notifier = start_node(db, centre, "edge-f")
    try:
        rollout = start_rollout(centre, "filtered", ["100%"])
        notifier.wait_for(f"rollout {rollout['id']} error")
        until(
            lambda: rollout_of(centre, rollout["id"])["status"] == "paused",
            WAIT,
            "the wave to pause",
        )
        paused = rollout_of(centre, rollout["id"])
        assert "edge-f" in paused["paused_reason"] and "can be set here" in paused["paused_reason"]
        with PipelineStore(db) as store:
            assert store.current().pipeline_type == "raw"
    finally:
        notifier.kill()


def test_two_operators_pausing_and_aborting_at_once_one_wins(centre, tmp_path):
    db = node_db(tmp_path / "node.db")
    start_node(db, centre, "edge-r").stop()  # known to the centre
    rollout = start_rollout(centre, "schematized", ["100%"])
    barrier, answers = threading.Barrier(2), {}

    def act(who, action):
        url = f"{centre.url}/api/fleet/rollouts/{rollout['id']}/{action}"
        headers = {**basic(who), "If-Match": f'"{rollout["version"]}"'}
        barrier.wait()
        try:
            answers[who] = (200, call(url, {"reason": f"{who} says {action}"}, headers))
        except urllib.error.HTTPError as error:
            answers[who] = (error.code, json.loads(error.read()))

    threads = [
        threading.Thread(target=act, args=("alice", "pause")),
        threading.Thread(target=act, args=("bob", "abort")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(code for code, _ in answers.values())
    assert codes == [200, 412], answers
    winner = next(who for who, (code, _) in answers.items() if code == 200)
    loser = "bob" if winner == "alice" else "alice"
    assert f"{winner} did" in answers[loser][1]["error"]
    final = rollout_of(centre, rollout["id"])
    assert final["status"] == {"alice": "paused", "bob": "aborted"}[winner]
