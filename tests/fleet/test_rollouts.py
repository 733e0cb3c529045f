"""Rollouts on the centre (issue 18), on SQLite and PostgreSQL: waves fixed at creation, gates,
delivery through signed answers, conflicts and errors, drift, approvals, overlaps."""

import time

import pytest
from fleetlib import FLEET_SECRET, post, record, report
from rolloutlib import (
    ROLLOUTS,
    SimFleet,
    action,
    create,
    fetch,
    rollout_centre,  # noqa: F401 (a fixture, asked for by name)
)
from weblib import basic

from webapp.accounts.signatures import derive_node_key, verify
from webapp.fleet.rollouts.plan import wave_order


@pytest.fixture
def centre(fleet_db, request):
    return request.getfixturevalue("rollout_centre")


@pytest.fixture
def fleet(centre):
    client = centre().test_client()
    sim = SimFleet(client)
    for n in range(12):
        sim.add(f"edge-{n:03}")
    return sim


def started(client, **body):
    made = create(client, **body)
    assert made.status_code == 201, made.json
    run = action(client, made.json, "start")
    assert run.status_code == 200, run.json
    return run.json


def wave_names(client, rollout_id, wave, status=None):
    query = f"?wave={wave}&limit=500" + (f"&status={status}" if status else "")
    return [n["node"] for n in client.get(f"{ROLLOUTS}/{rollout_id}/nodes{query}").json["nodes"]]


def test_waves_are_fixed_at_creation_in_hash_order_and_shown_before_approval(fleet):
    made = create(fleet.client, waves=[1, "25%", "100%"])
    assert made.status_code == 201
    rollout = made.json
    assert rollout["status"] == "approved" and rollout["nodes"] == 12
    assert rollout["wave_sizes"] == [1, 2, 9]  # cumulative 1, 3 (25 % of 12), 12
    order = wave_order(rollout["id"], sorted(fleet.nodes))
    assert wave_names(fleet.client, rollout["id"], 1) == order[:1]
    assert sorted(wave_names(fleet.client, rollout["id"], 2)) == sorted(order[1:3])
    assert all(p["waiting"] == p["nodes"] for p in rollout["progress"])
    assert rollout["audit"][0]["action"] == "create" and rollout["audit"][0]["actor"] == "alice"
    # Nothing is delivered before the start, even to nodes that accept rollouts.
    assert fleet.cycle_all() == dict.fromkeys(fleet.nodes)


def test_waves_advance_when_taken_and_the_rollout_finishes(fleet):
    rollout = started(fleet.client)
    first = wave_names(fleet.client, rollout["id"], 1)
    desires = fleet.cycle_all()
    assert [name for name, d in desires.items() if d] == first
    desire = desires[first[0]]
    assert desire == {
        "rollout": rollout["id"],
        "pipeline_type": "filtered",
        "expect_id": 1,
        "reason": "test rollout",
        "by": "alice",
    }
    now = fetch(fleet.client, rollout["id"])
    assert now["current_wave"] == 2 and now["progress"][0]["taken"] == 1
    for _ in range(3):
        fleet.cycle_all()
    done = fetch(fleet.client, rollout["id"])
    assert done["status"] == "finished"
    assert all(node.pipeline_type == "filtered" for node in fleet.nodes.values())
    assert all(node.applied == [rollout["id"]] for node in fleet.nodes.values())  # once each
    actions = [record["action"] for record in reversed(done["audit"])]
    assert actions == ["create", "start"] + ["wave_start", "wave_end"] * 3 + ["finish"]
    summary = fleet.client.get("/api/fleet/summary").json
    assert summary["by_sync"]["in_sync"] == 12


def test_the_desire_comes_in_an_answer_signed_with_the_nodes_key(fleet):
    rollout = started(fleet.client, waves=["100%"])
    node = fleet.nodes["edge-000"]
    node.seq += 1
    body = report("edge-000", current=record(1, "raw"), seq=node.seq)
    body["accept_rollouts"] = True
    answer = post(fleet.client, body)
    verify(derive_node_key(FLEET_SECRET, "edge-000"), answer.headers, answer.data, time.time())
    assert answer.json["desired"]["rollout"] == rollout["id"]
    body["accept_rollouts"], body["seq"] = False, node.seq + 1
    assert "desired" not in post(fleet.client, body).json  # a node that did not opt in


def test_a_node_that_did_not_opt_in_takes_through_the_push_path(fleet):
    fleet.nodes["edge-005"].accept = False
    rollout = started(fleet.client, waves=["100%"])
    fleet.cycle_all()
    assert fetch(fleet.client, rollout["id"])["status"] == "running"
    fleet.local_change("edge-005", "filtered")  # what a Bacalhau job's `set` does
    fleet.report("edge-005")
    assert fetch(fleet.client, rollout["id"])["status"] == "finished"


def test_expect_id_is_fixed_when_the_wave_starts(fleet):
    rollout = started(fleet.client, waves=[1, "100%"])
    last = wave_names(fleet.client, rollout["id"], 2)[0]
    fleet.local_change(last, "schematized")  # before its wave: the centre learns id 2
    fleet.report(last)
    fleet.cycle_all()  # wave 1 takes; wave 2 starts with expect_id 2 for that node
    node = fleet.client.get(f"{ROLLOUTS}/{rollout['id']}/nodes?wave=2&limit=500").json["nodes"]
    assert {n["node"]: n["expect_id"] for n in node}[last] == 2


def test_a_local_change_while_the_desire_is_in_flight_is_a_conflict_not_an_overwrite(fleet):
    rollout = started(fleet.client, waves=[1, "100%"])
    canary = wave_names(fleet.client, rollout["id"], 1)[0]
    desired = fleet.report(canary)["desired"]
    fleet.local_change(canary, "aggregated")  # the node's operator, before it applies
    assert fleet.apply(canary, desired) == "conflict"
    fleet.report(canary)
    paused = fetch(fleet.client, rollout["id"])
    assert fleet.nodes[canary].pipeline_type == "aggregated"  # the local change won
    assert paused["status"] == "paused" and canary in paused["paused_reason"]
    assert "conflict" in paused["paused_reason"]
    assert paused["progress"][0]["conflict"] == 1
    assert fleet.report(canary).get("desired") is None  # not retried by itself
    nodes = fleet.client.get("/api/fleet/nodes?state=conflict").json["nodes"]
    assert [n["node"] for n in nodes] == [canary] and nodes[0]["sync"] == "conflict"
    retried = action(fleet.client, paused, "resume", "bob", retry=[canary], reason="checked")
    assert retried.status_code == 200, retried.json
    assert retried.json["audit"][0] | {"at": None} == {
        "at": None,
        "actor": "bob",
        "action": "resume",
        "why": "checked",
        "retry": [canary],
    }
    desired = fleet.report(canary)["desired"]
    assert desired["expect_id"] == fleet.nodes[canary].change_id  # what the centre knows now
    assert fleet.apply(canary, desired) == "applied"
    fleet.report(canary)
    assert fetch(fleet.client, rollout["id"])["current_wave"] == 2


def test_a_type_the_nodes_table_refuses_is_an_error_that_pauses_the_wave(fleet):
    rollout = started(fleet.client, waves=[1, "100%"])
    canary = wave_names(fleet.client, rollout["id"], 1)[0]
    fleet.nodes[canary].refuses = ("filtered",)
    fleet.cycle(canary)
    paused = fetch(fleet.client, rollout["id"])
    assert paused["status"] == "paused" and "CHECK constraint failed" in paused["paused_reason"]
    assert paused["progress"][0]["error"] == 1
    assert wave_names(fleet.client, rollout["id"], 2, "pending") == []  # wave 2 never started
    skipped = action(fleet.client, paused, "resume", skip=[canary])
    assert skipped.status_code == 200 and skipped.json["current_wave"] == 2
    assert fleet.nodes[canary].pipeline_type == "raw"
    assert fleet.client.get(f"/api/fleet/nodes/{canary}").json["sync"] is None


def test_a_wave_not_taken_within_its_timeout_pauses_naming_the_nodes(fleet):
    from webapp.fleet.rollouts.store import RolloutStore

    rollout = started(fleet.client, waves=[1, "100%"], wave_timeout_s=10)
    canary = wave_names(fleet.client, rollout["id"], 1)[0]
    with fleet.client.application.app_context():
        from webapp.fleet.db import get_store

        store = RolloutStore(get_store())
        assert store.get(rollout["id"], int(time.time() * 1000) + 5_000).status == "running"
        later = store.get(rollout["id"], int(time.time() * 1000) + 11_000)
    assert later.status == "paused" and "not taken within 10 s" in later.paused_reason
    assert canary in later.paused_reason


def test_a_stale_node_is_pending_and_receives_the_desire_when_it_comes_back(fleet):
    from webapp.fleet.db import get_store

    node = fleet.nodes["edge-007"]
    with fleet.client.application.app_context():
        from webapp.fleet.report import read_report

        node.seq += 1
        stale = read_report(report("edge-007", current=record(1), seq=node.seq, interval_s=5))
        hour_ago = int(time.time() * 1000) - 3_600_000
        get_store().ingest(stale, "msg_old", int(time.time()), received_ms=hour_ago)
    rollout = started(fleet.client, waves=["100%"])
    for name in sorted(fleet.nodes):
        if name != "edge-007":
            fleet.cycle(name)
    waiting = fetch(fleet.client, rollout["id"])
    assert waiting["status"] == "running"
    assert waiting["progress"][0]["pending"] == 1 and waiting["progress"][0]["stale"] == 1
    assert fleet.cycle("edge-007")["rollout"] == rollout["id"]
    assert fetch(fleet.client, rollout["id"])["status"] == "finished"


def test_drift_after_a_finished_rollout_is_shown_not_reverted(fleet):
    rollout = started(fleet.client, waves=["100%"])
    fleet.cycle_all()
    fleet.local_change("edge-002", "raw")
    assert fleet.report("edge-002").get("desired") is None
    drifted = fleet.client.get("/api/fleet/nodes?state=drifted").json["nodes"]
    assert [n["node"] for n in drifted] == ["edge-002"]
    summary = fleet.client.get("/api/fleet/summary").json["by_sync"]
    assert summary == {"in_sync": 11, "pending": 0, "drifted": 1, "conflict": 0}
    assert fetch(fleet.client, rollout["id"])["progress"][0]["drifted"] == 1
    assert fleet.nodes["edge-002"].pipeline_type == "raw"
    # The pages show it too: the table's filter by sync, and the node's own page.
    table = fleet.client.get("/?state=drifted").get_data(as_text=True)
    assert 'data-node="edge-002"' in table and 'data-sync="drifted"' in table
    assert 'data-node="edge-001"' not in table
    assert 'id="node-sync" data-sync="drifted"' in fleet.client.get("/nodes/edge-002").text


def test_an_overlapping_rollout_is_refused_naming_the_holder(fleet):
    fleet.add("us-001", region="us")
    first = create(fleet.client, selector="region=eu")
    assert first.status_code == 201
    overlap = create(fleet.client, "bob", selector="")
    assert overlap.status_code == 409
    assert f"rollout {first.json['id']}" in overlap.json["error"]
    assert create(fleet.client, "bob", selector="region=us").status_code == 201
    assert action(fleet.client, first.json, "abort", reason="wrong type").status_code == 200
    assert create(fleet.client, "bob", selector="region=eu").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"reason": ""},
        {"reason": "fix\u202ethis"},
        {"reason": "x" * 2001},
        {"pipeline_type": "bogus"},
        {"waves": []},
        {"waves": ["10%", 1]},
        {"waves": [1, "10%"]},
        {"waves": ["101%"]},
        {"waves": ["١٠%"]},
        {"waves": [True]},
        {"waves": [10**30]},
        {"wave_timeout_s": 1},
        {"wave_timeout_s": "9" * 400},
        {"selector": "region"},
        {"selector": "Region=eu"},
        {"selector": "region=\x00"},
        {"extra": 1},
    ],
)
def test_a_bad_rollout_is_refused_in_one_line_and_nothing_is_created(fleet, body):
    answer = create(fleet.client, **body)
    assert answer.status_code in (400, 409), answer.json
    assert "\n" not in answer.json["error"]
    assert fleet.client.get(ROLLOUTS).json["rollouts"] == []


def test_writes_need_an_operator_and_bodies_must_be_json(fleet):
    assert fleet.client.post(ROLLOUTS, json={"pipeline_type": "raw"}).status_code == 401
    wrong = fleet.client.post(ROLLOUTS, json={}, headers=basic("alice", "nope"))
    assert wrong.status_code == 401
    deep = "[" * 100_000 + "]" * 100_000
    answer = fleet.client.post(
        ROLLOUTS, data=deep, headers={**basic(), "Content-Type": "application/json"}
    )
    assert answer.status_code in (400, 413)
    assert fleet.client.get(f"{ROLLOUTS}/999").status_code == 404
    huge = "9" * 30
    assert fleet.client.get(f"{ROLLOUTS}/{huge}").status_code == 404
    assert fleet.client.get(f"/rollouts/{huge}").status_code == 404
    stale = fleet.client.post(f"{ROLLOUTS}/{huge}/pause", headers={**basic(), "If-Match": '"1"'})
    assert stale.status_code == 404
    assert fleet.client.get(f"{ROLLOUTS}/1/nodes?after=a%00b").status_code in (400, 404)
    assert fleet.client.get(ROLLOUTS).json["rollouts"] == []


def test_a_nodes_malformed_rollout_outcome_is_ignored(fleet):
    rollout = started(fleet.client, waves=["100%"])
    for told in (
        {"rollout": True, "outcome": "error"},
        {"rollout": rollout["id"], "outcome": "nonsense"},
        {"rollout": rollout["id"], "outcome": "error", "message": {"deep": [1]}},
        {"rollout": str(rollout["id"]), "outcome": "conflict"},
    ):
        fleet.nodes["edge-001"].outcome = told
        fleet.report("edge-001")
    status = fetch(fleet.client, rollout["id"])
    # Only the one well-formed error (its message replaced) counts: the wave pauses on it.
    assert status["progress"][0]["error"] == 1
    assert "not plain text" in status["paused_reason"]
