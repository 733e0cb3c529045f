"""Operator actions on rollouts, on SQLite and PostgreSQL: a second operator's approval,
compare-and-set on the rollout's version (racing operators, an approval after an abort), and a
centre restarted mid-rollout."""

import threading

import pytest
from rolloutlib import (
    SimFleet,
    action,
    create,
    fetch,
    rollout_centre,  # noqa: F401 (a fixture, asked for by name)
)
from weblib import PASSWORDS

from webapp.core.errors import ConflictError


@pytest.fixture
def centre(fleet_db, request):
    return request.getfixturevalue("rollout_centre")


def fleet_of(app, nodes=6):
    sim = SimFleet(app.test_client())
    for n in range(nodes):
        sim.add(f"edge-{n:03}")
    return sim


def test_with_two_approvals_another_operator_must_approve(centre):
    fleet = fleet_of(centre(FLEET_APPROVALS=2))
    made = create(fleet.client, reason="canary first")
    assert made.status_code == 201 and made.json["status"] == "awaiting_approval"
    rollout = made.json
    own = action(fleet.client, rollout, "approve")
    assert own.status_code == 403 and "another operator" in own.json["error"]
    early = action(fleet.client, rollout, "start")
    assert early.status_code == 409 and "awaiting approval" in early.json["error"]
    approved = action(fleet.client, rollout, "approve", "bob", reason="looked at the canary")
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "approved" and approved.json["approved_by"] == ["bob"]
    assert approved.json["audit"][0]["actor"] == "bob"
    assert approved.json["audit"][0]["why"] == "looked at the canary"
    assert fleet.cycle_all() == dict.fromkeys(fleet.nodes)  # still nothing delivered
    assert action(fleet.client, approved.json, "start").json["status"] == "running"


def test_one_approval_lets_the_author_start(centre):
    fleet = fleet_of(centre())
    rollout = create(fleet.client).json
    assert rollout["status"] == "approved" and rollout["approvals_needed"] == 1
    assert action(fleet.client, rollout, "start").json["status"] == "running"


def test_an_action_needs_the_version_and_a_stale_one_says_who_acted(centre):
    fleet = fleet_of(centre())
    rollout = action(fleet.client, create(fleet.client).json, "start").json
    from weblib import basic

    bare = fleet.client.post(f"/api/fleet/rollouts/{rollout['id']}/pause", headers=basic())
    assert bare.status_code == 428
    assert action(fleet.client, rollout, "pause", "bob").status_code == 200
    stale = action(fleet.client, rollout, "abort")
    assert stale.status_code == 412
    assert "bob did pause" in stale.json["error"] and "reload" in stale.json["error"]
    bad = action(fleet.client, rollout, "pause", version="1\u0662")
    assert bad.status_code == 400
    assert action(fleet.client, rollout, "explode").status_code in (400, 404)


def test_an_approval_after_an_abort_is_refused(centre):
    fleet = fleet_of(centre(FLEET_APPROVALS=2))
    rollout = create(fleet.client).json
    aborted = action(fleet.client, rollout, "abort", reason="wrong selector")
    assert aborted.status_code == 200 and aborted.json["status"] == "aborted"
    late = action(fleet.client, rollout, "approve", "bob")  # the page bob had open
    assert late.status_code == 412 and "alice did abort" in late.json["error"]
    again = action(fleet.client, aborted.json, "approve", "bob")
    assert again.status_code == 409 and "aborted" in again.json["error"]
    assert fetch(fleet.client, rollout["id"])["approved_by"] == []
    assert fleet.client.get("/api/fleet/summary").json["by_sync"]["pending"] == 0


def test_two_operators_pausing_and_aborting_at_once_one_wins(centre):
    app = centre()
    fleet = fleet_of(app)
    rollout = action(fleet.client, create(fleet.client).json, "start").json
    from webapp.fleet.rollouts.service import AppRollouts

    with app.app_context():
        from webapp.fleet.db import get_store

        store = AppRollouts(get_store())
    barrier = threading.Barrier(2)
    results = {}

    def run(who, what):
        barrier.wait()
        try:
            with app.app_context():
                store.act(rollout["id"], what, who, rollout["version"])
            results[who] = "done"
        except ConflictError as error:
            results[who] = str(error)

    threads = [
        threading.Thread(target=run, args=("alice", "pause")),
        threading.Thread(target=run, args=("bob", "abort")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()).count("done") == 1, results
    winner = next(who for who, result in results.items() if result == "done")
    loser = next(who for who in results if who != winner)
    assert "changed since version" in results[loser]
    final = fetch(fleet.client, rollout["id"])
    assert final["status"] == {"alice": "paused", "bob": "aborted"}[winner]
    acted = [(r["actor"], r["action"]) for r in final["audit"] if r["action"] in ("pause", "abort")]
    assert acted == [(winner, {"alice": "pause", "bob": "abort"}[winner])]


def test_the_centre_restarted_mid_rollout_keeps_its_state_and_continues(centre):
    first = centre()
    fleet = fleet_of(first)
    rollout = action(fleet.client, create(fleet.client, waves=[1, "100%"]).json, "start").json
    fleet.cycle_all()  # the canary takes; wave 2 starts
    first.extensions["fleet.store"][1].close()
    second = centre()  # a new process's app on the same store
    fleet.client = second.test_client()
    kept = fetch(fleet.client, rollout["id"])
    assert kept["status"] == "running" and kept["current_wave"] == 2
    fleet.cycle_all()
    assert fetch(fleet.client, rollout["id"])["status"] == "finished"
    assert all(len(node.applied) == 1 for node in fleet.nodes.values())


def test_operators_are_the_ones_the_credentials_name(centre):
    fleet = fleet_of(centre())
    made = fleet.client.post(
        "/api/fleet/rollouts",
        json={"pipeline_type": "raw", "reason": "r", "author": "mallory"},
        headers=__import__("weblib").basic("bob", PASSWORDS["bob"]),
    )
    assert made.status_code == 400  # no field names an operator
    made = create(fleet.client, "bob")
    assert made.json["author"] == "bob"
