"""Real nodes report to a real centre: ``pipeline-manager notify --fleet`` processes on real node
databases, the centre under gunicorn on SQLite and on a real PostgreSQL, over loopback.

Whatever writes a change (the CLI, the dashboard, a plain sqlite3 INSERT), the centre holds the
node's changes exactly, in id order, through a centre outage, a notifier killed with SIGKILL, and
a node database replaced by a backup.
"""

import json
import shutil
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest
from fleetlib import FLEET_SECRET, FleetServer
from hooklib import WAIT, Notifier, Receiver, until
from pglib import postgres, store_setting  # noqa: F401 (postgres: a fixture)
from weblib import log_in, make_app
from workers import clean_env, run_cli

from webapp.accounts.signatures import derive_node_key, new_message_id, sign
from webapp.core.store import PipelineStore
from webapp.notify import report
from webapp.notify.fleet import FleetTarget, report_url
from webapp.notify.webhooks import DeliveryFailed, exchange

pytestmark = pytest.mark.slow

COMPARED = ("id", "pipeline_type", "bucket", "updated_at", "updated_by", "metadata", "default")


@pytest.fixture(params=["sqlite", "postgresql"])
def centre(request, tmp_path):
    """The fleet centre under gunicorn (2 workers), on SQLite or a fresh PostgreSQL database."""
    setting = store_setting(request.param, request, tmp_path, migrated=True)
    centre = FleetServer(next(setting), tmp_path / "centre.db").start()
    yield centre
    centre.stop()
    next(setting, None)  # drops the PostgreSQL database


class Node:
    """A node: its sensor database, and its ``notify --fleet`` process when started."""

    def __init__(self, db_path, centre, name="edge-001"):
        self.name, self.centre = name, centre
        self.db = db_path  # a sensor database (conftest's db_path)
        PipelineStore(self.db).close()  # creates pipeline_config, as the first command would
        self.notifier = None

    def start(self, *extra) -> Notifier:
        key = derive_node_key(FLEET_SECRET, self.name)
        self.notifier = Notifier(
            self.db,
            *("--fleet", self.centre.url, "--node", self.name, "--label", "region=eu"),
            *("--heartbeat", "5", "--max-backoff", "2", *extra),
            env={"PIPELINE_FLEET_KEY": key},
        )
        self.notifier.wait_for("acknowledged up to")
        return self.notifier

    def set(self, pipeline_type, reason="test", by="ops"):
        with PipelineStore(self.db) as store:
            return store.set(pipeline_type, updated_by=by, reason=reason, source="cli").change.id

    def records(self) -> list[dict]:
        with PipelineStore(self.db) as store:
            return [change.to_dict() for change in store.changes_after(0, limit=10**6)]

    def stop(self):
        if self.notifier is not None:
            self.notifier.kill()


@pytest.fixture
def node(db_path, centre):
    node = Node(db_path, centre)
    yield node
    node.stop()


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def at_centre(centre, name) -> tuple[dict, list[dict]]:
    """Return the centre's node object and all its changes of the newest epoch, oldest first."""
    url = f"{centre.url}/api/fleet/nodes/{name}?limit=500"
    document = fetch(url)
    changes, cursor = document["changes"], document["next_before"]
    while cursor:
        page = fetch(f"{url}&before={cursor}")
        changes, cursor = changes + page["changes"], page["next_before"]
    epoch = document.get("epoch", 0)
    return document, [c for c in reversed(changes) if c.get("epoch", 0) == epoch]


def centre_holds(node, count) -> bool:
    try:
        document, changes = at_centre(node.centre, node.name)
    except urllib.error.HTTPError:
        return False  # 404 until the first report
    return len(changes) == count and document["current"].get("id") == changes[-1]["id"]


def assert_same_history(node):
    """The centre holds the node's changes exactly, and they arrived in id order."""
    _, held = at_centre(node.centre, node.name)
    mine = node.records()
    assert [{k: c[k] for k in COMPARED} for c in held] == [
        {k: c[k] for k in COMPARED} for c in mine
    ]
    arrivals = [c["received_at"] for c in held]
    assert arrivals == sorted(arrivals), "a change arrived before an older one"


def insert_rows(db, count, pipeline_type="schematized", by="sqlite3"):
    """Insert rows as another tool would: plain SQL, no metadata, one transaction."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO pipeline_config (pipeline_type, updated_by) VALUES (?, ?)",
            [(pipeline_type, f"{by}-{n}") for n in range(count)],
        )
    conn.close()


def copy_database(source, target):
    """Copy ``source`` over ``target`` with SQLite's backup API, as ``sqlite3 target ".restore
    source"`` does (the way to restore a live WAL database: a file copied over it would meet
    the old -wal file beside it)."""
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
    origin.close()
    copy.close()
    return target


def test_changes_from_the_cli_the_dashboard_and_sqlite_reach_the_centre_in_order(
    node, tmp_path, monkeypatch
):
    node.start()
    cli = run_cli(
        *("--db", node.db, "set", "filtered", "--by", "ops", "--reason", "from the CLI"),
        entrance="pipeline-manager",
        env=clean_env(),
    )
    assert cli.returncode == 0, cli.stderr
    client = make_app(node.db, tmp_path, monkeypatch).test_client()
    log_in(client)
    form = {"pipeline_type": "aggregated", "reason": "from the dashboard", "expect_id": "1"}
    assert client.post("/change/apply", data=form).status_code == 302
    insert_rows(node.db, 1)
    until(lambda: centre_holds(node, 3), WAIT, "the centre holding the 3 changes")
    assert_same_history(node)
    document, held = at_centre(node.centre, node.name)
    assert [c["metadata"].get("source") for c in held] == ["cli", "web", None]
    assert document["state"] == "reporting" and document["labels"] == {"region": "eu"}
    assert document["interval_s"] == 5 and document["agent"].startswith("pipeline-manager/")


def test_a_centre_down_for_a_while_loses_nothing_and_keeps_order(node):
    node.set("filtered")
    node.start()
    until(lambda: centre_holds(node, 1), WAIT, "the first change at the centre")
    node.centre.stop()
    insert_rows(node.db, 1200)  # a backlog longer than two posts (≤ 500 changes each)
    node.set("raw", reason="while the centre was down")
    node.notifier.wait_for("not acknowledged", count=2)
    node.centre.start()
    until(lambda: centre_holds(node, 1202), 3 * WAIT, "the centre holding all 1202 changes")
    assert_same_history(node)
    sizes = [
        int(line.split("(")[1].split(" ")[0]) for line in node.notifier.wait_for("changes, HTTP")
    ]
    assert max(sizes) == 500 and sum(sizes) == 1202


def test_a_notifier_killed_and_restarted_leaves_no_gap(node):
    stop, written = threading.Event(), [node.set("raw", reason="before the notifier")]
    node.start()

    def writer():
        kinds = ("raw", "filtered", "aggregated", "schematized")
        while not stop.wait(0.005):  # a change every few ms: some land mid-report
            written.append(node.set(kinds[len(written) % 4], reason=f"write {len(written)}"))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        node.notifier.wait_for("changes, HTTP 200", count=3)
        node.notifier.stop(signal.SIGKILL)  # no goodbye: the state file is as the last ack left it
        at_kill = len(written)
        until(lambda: len(written) >= at_kill + 20, WAIT, "changes written with no notifier")
        node.start()
        at_restart = len(written)
        until(lambda: len(written) >= at_restart + 20, WAIT, "changes written after the restart")
    finally:
        stop.set()
        thread.join()
    until(lambda: centre_holds(node, len(written)), 3 * WAIT, "every change at the centre")
    assert_same_history(node)


def test_a_database_replaced_by_a_backup_shows_the_restored_state(node, tmp_path):
    for kind in ("filtered", "aggregated", "raw"):
        node.set(kind)
    backup = copy_database(node.db, tmp_path / "backup.db")
    node.start()
    node.set("schematized")
    node.set("filtered")
    until(lambda: centre_holds(node, 5), WAIT, "the 5 changes at the centre")
    copy_database(backup, node.db)  # the operator restores last night's backup
    # At once if the watcher saw #5 before the restore, else with the next heartbeat (5 s).
    until(lambda: at_centre(node.centre, node.name)[0]["current"]["id"] == 3, WAIT, "restore")
    document, held = at_centre(node.centre, node.name)
    assert document["current"]["pipeline_type"] == "raw"
    restores = [e for e in document["events"] if e["kind"] == "restore"]
    assert [(e["from_id"], e["to_id"]) for e in restores] == [(5, 3)]
    node.set("aggregated", reason="after the restore")  # id 4 again, in the restored database
    until(lambda: at_centre(node.centre, node.name)[0]["current"]["id"] == 4, WAIT, "new change")
    document, held = at_centre(node.centre, node.name)
    assert document["current"]["pipeline_type"] == "aggregated"
    assert held[-1]["metadata"]["reason"] == "after the restore"


def test_an_unusable_database_is_reported_as_an_error_then_recovers(node, tmp_path):
    node.set("filtered")
    node.start()
    until(lambda: centre_holds(node, 1), WAIT, "the change at the centre")
    shutil.move(node.db, tmp_path / "away.db")
    until(lambda: at_centre(node.centre, node.name)[0]["state"] == "error", WAIT, "error state")
    document, _ = at_centre(node.centre, node.name)
    assert document["current"]["error"]["code"] == 5
    shutil.move(tmp_path / "away.db", node.db)
    until(lambda: at_centre(node.centre, node.name)[0]["state"] == "reporting", WAIT, "recovery")


def test_a_skewed_clock_is_refused_with_the_centres_time_named(node):
    """The node's line for a 401 skew names the skew and the centre's time (real answer)."""
    key = derive_node_key(FLEET_SECRET, node.name)
    target = FleetTarget(report_url(node.centre.url), node.name, {}, 60, key)
    with PipelineStore(node.db) as store:
        data, _ = report.body(target, 1, report.current_record(store), [])
    late = int(time.time()) - 1000  # this node's clock, 1000 s behind the centre's
    headers = {"Content-Type": "application/json", **sign(key, new_message_id(), late, data)}
    answer = exchange(target.centre, data, headers)
    with pytest.raises(DeliveryFailed) as refused:
        report.acknowledgement(answer, key, late)
    line = str(refused.value)
    assert "clock" in line and "s off the centre's" in line and "Z" in line
    skew = int(line.split("it is ")[1].split(" s off")[0])
    assert -1005 <= skew <= -995


def test_an_answer_not_signed_with_the_node_key_moves_nothing(db_path, tmp_path):
    """An impostor at the centre's address cannot acknowledge anything: its 200 is not signed."""
    impostor = Receiver().start()
    db = db_path
    with PipelineStore(db) as store:
        store.set("filtered", updated_by="ops", reason="test", source="cli")
    key = derive_node_key(FLEET_SECRET, "edge-009")
    notifier = Notifier(
        db,
        *("--fleet", f"http://127.0.0.1:{impostor.port}", "--node", "edge-009"),
        env={"PIPELINE_FLEET_KEY": key},
    )
    try:
        notifier.wait_for("not signed with this node's key", count=2)
        assert impostor.taken and all(p.path == "/api/fleet/report" for p in impostor.taken)
        state = tmp_path / "pipeline-notify-state.json"
        saved = json.loads(state.read_text())["webhooks"] if state.exists() else {}
        assert saved == {}
    finally:
        notifier.kill()
        impostor.stop()


def test_webhooks_and_the_fleet_run_in_one_process_each_at_its_own_pace(node):
    """A dead webhook holds back only itself: the centre gets every change meanwhile."""
    receiver = Receiver(answers=[503] * 3).start()  # the chat service is down for three posts
    try:
        node.set("raw", reason="before")
        node.start("--webhook", receiver.url)
        ids = [node.set(kind, reason="both") for kind in ("filtered", "aggregated", "raw")]
        until(lambda: centre_holds(node, 4), WAIT, "the centre holding the 4 changes")
        receiver.acknowledged_until(ids[-1])
        assert receiver.ids(status=200) == ids
        assert_same_history(node)
    finally:
        receiver.stop()
