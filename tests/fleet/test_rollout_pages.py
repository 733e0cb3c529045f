"""The rollout pages on SQLite and PostgreSQL: CSRF forms by the signed-in operator, a second
operator's approval, the 204 poll, a stale form, the push specs of a started wave."""

import re

import pytest
import yaml
from htmldom import parse
from rolloutlib import (
    SimFleet,
    rollout_centre,  # noqa: F401 (a fixture, asked for by name)
)
from weblib import csrf_from, log_in


@pytest.fixture
def centre(fleet_db, request):
    """Make a centre with 8 reporting nodes: (app, SimFleet)."""
    make_app = request.getfixturevalue("rollout_centre")

    def make(**config):
        app = make_app(**config)
        sim = SimFleet(app.test_client())
        for n in range(8):
            sim.add(f"edge-{n:03}")
        return app, sim

    return make


def signed_in(app, name):
    client = app.test_client()
    assert log_in(client, name).status_code == 302
    return client


def form_post(client, page_url, action_url, **data):
    token = csrf_from(client.get(page_url).get_data(as_text=True))
    return client.post(action_url, data={"csrf_token": token, **data})


def new_rollout(client, **data):
    fields = {"pipeline_type": "filtered", "reason": "EU canary", "waves": "1, 50%, 100%"}
    return form_post(client, "/rollouts", "/rollouts", **(fields | data))


def version_of(client, rollout_id):
    page = parse(client.get(f"/rollouts/{rollout_id}").get_data(as_text=True))
    return page.by_id("since").get("value")


def test_signed_out_readers_see_rollouts_but_cannot_act(centre):
    app, _ = centre()
    client = app.test_client()
    page = parse(client.get("/rollouts").get_data(as_text=True))
    assert page.by_id("signin-to-create") and not page.find(id="rollout-form")
    refused = form_post(client, "/rollouts", "/rollouts", pipeline_type="raw", reason="x")
    assert refused.status_code == 403
    assert client.post("/rollouts", data={"pipeline_type": "raw"}).status_code == 400  # no token


def test_create_approve_as_a_second_operator_start_and_pause(centre):
    app, fleet = centre(FLEET_APPROVALS=2)
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    made = new_rollout(alice)
    assert made.status_code == 303
    url = made.headers["Location"]
    page = parse(alice.get(url).get_data(as_text=True))
    assert page.by_id("rollout-status").text() == "awaiting approval"
    assert [li.get("data-size") for li in page.by_id("waves").find_all("li")] == ["1", "3", "4"]
    assert page.find(id="action-approve") is None  # not for its author
    assert page.by_id("action-abort")
    approve = form_post(bob, url, url + "/approve", version=version_of(bob, 1), reason="ok")
    assert approve.status_code == 303
    page = parse(bob.get(url).get_data(as_text=True))
    assert page.by_id("rollout-approvals").text().startswith("bob")
    assert [li.get("data-action") for li in page.by_id("audit").find_all("li")] == [
        "approve",
        "create",
    ]
    since = version_of(alice, 1)
    assert alice.get(f"{url}/poll?since={since}").status_code == 204
    started = form_post(alice, url, url + "/start", version=since)
    assert started.status_code == 303
    assert alice.get(f"{url}/poll?since={since}").status_code == 200
    fleet.cycle_all()
    paused = form_post(bob, url, url + "/pause", version=version_of(bob, 1), reason="look")
    assert paused.status_code == 303
    page = parse(bob.get(url).get_data(as_text=True))
    assert page.by_id("rollout-status").text() == "paused"
    assert page.by_id("action-resume") and page.find(id="action-pause") is None


def test_a_stale_form_is_refused_saying_who_acted(centre):
    app, _ = centre()
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    url = new_rollout(alice).headers["Location"]
    old = version_of(alice, 1)
    assert form_post(bob, url, url + "/start", version=old).status_code == 303
    stale = form_post(alice, url, url + "/abort", version=old)
    assert stale.status_code == 409
    problem = parse(stale.get_data(as_text=True)).by_id("action-problem").text()
    assert "bob did start" in problem or "centre did wave start" in problem.replace("_", " ")


def test_a_bad_form_is_one_line_and_creates_nothing(centre):
    app, _ = centre()
    alice = signed_in(app, "alice")
    for data in ({"reason": "a\u202eb"}, {"waves": "10%, 1"}, {"selector": "region"}):
        answer = new_rollout(alice, **data)
        assert answer.status_code == 400
        assert parse(answer.get_data(as_text=True)).by_id("rollout-problem").text()
    assert parse(alice.get("/rollouts").get_data(as_text=True)).find(id="rollouts-table") is None


def test_each_started_wave_offers_push_specs_for_exactly_its_pending_nodes(centre):
    app, fleet = centre()
    alice = signed_in(app, "alice")
    url = new_rollout(alice, waves="1, 100%").headers["Location"]
    form_post(alice, url, url + "/start", version=version_of(alice, 1))
    canary = alice.get("/api/fleet/rollouts/1/nodes?wave=1").json["nodes"][0]["node"]
    fleet.cycle(canary)  # the canary takes: wave 2 starts, its nodes not yet reporting
    for kind in ("bacalhau", "kubernetes"):
        answer = alice.get(f"{url}/waves/2/{kind}.yaml")
        assert answer.status_code == 200
        docs = [doc for doc in yaml.safe_load_all(answer.get_data(as_text=True)) if doc]
        assert len(docs) == 7
        for doc in docs:
            command = (
                doc["Tasks"][0]["Engine"]["Params"]["Parameters"]
                if kind == "bacalhau"
                else doc["spec"]["template"]["spec"]["containers"][0]["command"]
            )
            assert command[command.index("--expect-id") + 1] == "1"
            assert "fleet:alice (rollout 1)" in command
        names = [
            doc["Constraints"][0]["Values"][0]
            if kind == "bacalhau"
            else doc["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
            for doc in docs
        ]
        assert canary not in names and sorted(names) == sorted(set(fleet.nodes) - {canary})
        assert all(
            re.fullmatch(r"[a-z0-9-]{1,63}", d["metadata"]["name"])
            for d in docs
            if kind == "kubernetes"
        )
    assert alice.get(f"{url}/waves/9/bacalhau.yaml").status_code == 400


def test_a_finished_rollout_offers_its_revert_per_previous_type(centre):
    app, fleet = centre()
    fleet.local_change("edge-001", "schematized")
    fleet.report("edge-001")
    alice = signed_in(app, "alice")
    url = new_rollout(alice, waves="100%").headers["Location"]
    form_post(alice, url, url + "/start", version=version_of(alice, 1))
    fleet.cycle_all()
    page = parse(alice.get(url).get_data(as_text=True))
    offers = {a.text(): a.get("href") for a in page.by_id("revert-offers").find_all("a")}
    assert set(offers) == {"Set 7 nodes back to raw", "Set 1 node back to schematized"}
    form = parse(alice.get(offers["Set 1 node back to schematized"]).get_data(as_text=True))
    assert form.by_id("revert-notice")
    data = {
        e.get("name"): e.get("value") or "" for e in form.by_id("rollout-form").find_all("input")
    }
    data.update(pipeline_type="schematized", waves="100%")
    made = alice.post("/rollouts", data=data)
    assert made.status_code == 303
    page = parse(alice.get(made.headers["Location"]).get_data(as_text=True))
    assert page.by_id("waves").find("li").get("data-size") == "1"


def test_the_fleet_page_filters_nodes_by_their_sync(centre):
    app, fleet = centre()
    alice = signed_in(app, "alice")
    url = new_rollout(alice, waves="100%").headers["Location"]
    form_post(alice, url, url + "/start", version=version_of(alice, 1))
    fleet.cycle_all()
    fleet.local_change("edge-003", "raw")
    fleet.report("edge-003")
    page = parse(alice.get("/?state=drifted").get_data(as_text=True))
    options = [o.get("value") for o in page.by_id("state").find_all("option")]
    assert {"in_sync", "pending", "drifted", "conflict"} <= set(options)
    table = page.by_id("nodes-heading").ancestors().__next__().text()
    assert "edge-003" in table and "edge-002" not in table
