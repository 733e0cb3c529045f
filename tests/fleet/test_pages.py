"""The centre's pages through the test client, on SQLite and PostgreSQL: the fleet at a glance,
the node table (filters, keyset pages), the live poll, one node's page. Reports arrive signed,
through POST /api/fleet/report, as a node's reporter sends them; pages are parsed as HTML."""

import pytest
from fleetlib import post, record, report
from htmldom import parse
from weblib import log_in, write_users

from webapp.fleet.pages import PAGE_SIZE

BUCKETS = {"raw": "ingestion", "filtered": "enriched", "aggregated": "aggregated"}


def change(change_id, pipeline_type, previous=None, who="alice", reason="test", when=None):
    """A record as the node's `get --json` prints it (bucket and previous type included)."""
    made = record(change_id, pipeline_type, who=who, reason=reason, when=when)
    made["bucket"] = BUCKETS.get(pipeline_type)
    made["managed"] = pipeline_type in ("raw", "schematized", "filtered", "aggregated")
    made["metadata"]["previous"] = previous
    return made


def send(client, node, history, *, seq=1, labels=None, current=None, interval_s=60):
    """Report ``history`` (records, oldest first) for ``node``; its newest is current."""
    body = report(
        node,
        current=current or history[-1],
        changes=history,
        labels=labels,
        seq=seq,
        interval_s=interval_s,
    )
    answer = post(client, body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


@pytest.fixture
def fleet(fleet_client):
    """A small fleet: two regions, three types, one node in error, one not managed."""
    send(fleet_client, "edge-001", [change(1, "raw"), change(2, "filtered", "raw", "bob", "ok")],
         labels={"region": "eu", "site": "berlin"})  # fmt: skip
    send(fleet_client, "edge-002", [change(1, "raw")], labels={"region": "eu", "site": "paris"})
    send(fleet_client, "edge-003", [change(1, "aggregated")], labels={"region": "us"})
    send(fleet_client, "edge-004", [change(1, "raw")], labels={"region": "us"},
         current={"error": {"code": 5, "message": "database is locked"}})  # fmt: skip
    send(fleet_client, "other-001", [change(1, "legacy-x")], labels={"region": "us"})
    return fleet_client


def page(client, url, status=200):
    answer = client.get(url)
    assert answer.status_code == status, answer.get_data(as_text=True)[:500]
    return parse(answer.get_data(as_text=True))


def rows(document):
    return [row.get("data-node") for row in document.find_all("tr", data_node=True)]


def test_overview_shows_types_states_mix_and_the_table(fleet):
    document = page(fleet, "/")
    bars = {item.get("data-type"): item.get("data-count") for item in
            document.by_id("by-type").find_all("li", data_type=True)}  # fmt: skip
    assert bars == {"raw": "1", "schematized": "0", "filtered": "1", "aggregated": "1",
                    "other": "1"}  # fmt: skip
    filtered = document.by_id("by-type").one("li", data_type="filtered")
    assert "enriched" in filtered.text()  # each type names its bucket (the centre's bucket map)
    # edge-004 reported an error before any record: it counts as in error, with no type.
    states = {item.get("data-state"): item.get("data-count") for item in
              document.by_id("by-state").find_all("li", data_state=True)}  # fmt: skip
    assert states == {"reporting": "4", "stale": "0", "error": "1", "unmanaged": "1"}
    today = document.by_id("mix").find_all("g", cls="mix-day")[-1]
    drawn = {rect.get("data-type"): rect.get("data-count") for rect in today.find_all("rect")}
    assert drawn == {"raw": "1", "filtered": "1", "aggregated": "1", "other": "1"}
    assert all(rect.find("title") for rect in today.find_all("rect"))
    assert len(document.by_id("mix").find_all("g", cls="mix-day")) == 7

    assert rows(document) == ["edge-001", "edge-002", "edge-003", "edge-004", "other-001"]
    first = document.one("tr", data_node="edge-001")
    assert first.get("data-state") == "reporting"
    assert first.one("a", cls="node-name").get("href") == "/nodes/edge-001"
    assert [code.text() for code in first.find_all("code")] == [
        "region=eu",
        "site=berlin",
        "enriched",
    ]
    assert first.one("span", cls="type").text() == "filtered"
    assert first.one("span", cls="who").text() == "bob"
    assert first.one("span", cls="reason").text() == "ok"
    assert "2026-12-03 05:00:00 UTC" in first.one("td", data_label="Since").text()
    assert first.one("td", data_label="Last report").find("time").get("datetime")
    failing = document.one("tr", data_node="edge-004")
    assert failing.get("data-state") == "error"
    assert "database is locked" in failing.one("td", data_label="State").text()
    assert document.one("tr", data_node="other-001").get("data-type") == "other"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("selector=region%3Deu", ["edge-001", "edge-002"]),
        ("selector=region%3Deu%2Csite%3Dberlin", ["edge-001"]),
        ("pipeline_type=raw", ["edge-002"]),
        ("pipeline_type=legacy-x", ["other-001"]),
        ("state=error", ["edge-004"]),
        ("name_prefix=other", ["other-001"]),
        ("selector=region%3Dus&name_prefix=edge-00", ["edge-003", "edge-004"]),
        ("selector=region%3Dmars", []),
    ],
)
def test_filters_in_the_url_narrow_the_table_and_stay_in_the_form(fleet, query, expected):
    document = page(fleet, f"/?{query}")
    assert rows(document) == expected
    form = document.by_id("fleet-filter")
    assert form.get("method") == "get"
    assert not form.find("input", name="csrf_token")  # a read: no token to leak into URLs
    for name, value in (part.split("=") for part in query.split("&")):
        field = form.find(id=name)
        shown = field.get("value") if field.tag == "input" else (
            field.one("option", selected=True).get("value"))  # fmt: skip
        assert shown == value.replace("%3D", "=").replace("%2C", ",")
    if not expected:
        assert "No node matches" in document.by_id("no-nodes").text()
    exports = document.find(id="export-csv")
    assert exports is None or "/api/fleet/nodes.csv" in exports.get("href")


@pytest.mark.parametrize(
    "query",
    [
        "selector=region",
        "selector=Region%3Deu",
        "selector=region%3D%E2%80%AEeu",  # a bidi override in a value
        "state=sleeping",
        "name_prefix=%00",
        "selector=" + "".join(f"k{n}%3Dv%2C" for n in range(70)),  # more than 64 labels
        "after=%1B%5B2J",  # a terminal escape in the cursor
        "pipeline_type=" + "x" * 5000,
    ],
)
def test_a_bad_filter_is_one_line_and_lists_nothing(fleet, query):
    answer = fleet.get(f"/?{query}")
    assert answer.status_code == 400
    document = parse(answer.get_data(as_text=True))
    problem = document.by_id("filter-problem").text()
    assert problem.startswith("Not listed:") and "\n" not in problem and "Traceback" not in problem
    assert rows(document) == []
    assert document.by_id("by-type")  # the glance still shows


def test_keyset_pages_of_fifty_keep_the_filters(fleet_client):
    for n in range(PAGE_SIZE + 5):
        send(fleet_client, f"node-{n:03d}", [change(1, "raw")], labels={"site": "a"})
    document = page(fleet_client, "/?selector=site%3Da")
    assert rows(document) == [f"node-{n:03d}" for n in range(PAGE_SIZE)]
    following = document.by_id("next-page").get("href")
    assert "selector=site" in following and f"after=node-{PAGE_SIZE - 1:03d}" in following
    assert document.find(id="first-page") is None
    second = page(fleet_client, following)
    assert rows(second) == [f"node-{n:03d}" for n in range(PAGE_SIZE, PAGE_SIZE + 5)]
    assert second.find(id="next-page") is None
    assert second.by_id("first-page").get("href") == "/?selector=site%3Da"
    # The poll of the second page asks for the same page.
    assert "after=node-049" in second.by_id("live-status").get("hx-get")


def test_poll_answers_204_until_a_node_changes_its_pipeline_or_state(fleet):
    document = page(fleet, "/?selector=region%3Deu")
    since = document.by_id("since").get("value")
    poll = document.by_id("live-status").get("hx-get")
    assert poll.startswith("/poll?") and "selector=region" in poll
    headers = {"HX-Request": "true"}
    assert fleet.get(f"{poll}&since={since}", headers=headers).status_code == 204
    # A heartbeat (nothing new) is not a change.
    send(fleet, "edge-002", [], seq=2, labels={"region": "eu", "site": "paris"},
         current=change(1, "raw"))  # fmt: skip
    assert fleet.get(f"{poll}&since={since}", headers=headers).status_code == 204

    send(fleet, "edge-002", [change(2, "aggregated", "raw", "carol", "night shift")], seq=3,
         labels={"region": "eu", "site": "paris"})  # fmt: skip
    answer = fleet.get(f"{poll}&since={since}", headers=headers)
    assert answer.status_code == 200
    fragments = parse(answer.get_data(as_text=True))
    assert fragments.by_id("glance").get("hx-swap-oob") == "true"
    assert fragments.by_id("nodes").get("hx-swap-oob") == "true"
    assert fragments.by_id("since").get("value") != since
    assert rows(fragments) == ["edge-001", "edge-002"]  # the page's filter still applies
    moved = fragments.one("tr", data_node="edge-002")
    assert moved.one("span", cls="type").text() == "aggregated"
    assert moved.one("span", cls="who").text() == "carol"
    assert "Fleet updated" in fragments.by_id("announcer").text()
    newer = fragments.by_id("since").get("value")
    assert fleet.get(f"{poll}&since={newer}", headers=headers).status_code == 204


def test_node_page_shows_the_report_history_and_timeline(fleet):
    document = page(fleet, "/nodes/edge-001")
    assert document.by_id("page-heading").text() == "edge-001"
    assert document.by_id("node-state").get("data-state") == "reporting"
    assert document.by_id("interval").text() == "60 s"
    assert document.by_id("agent").text() == "pipeline-manager/test"
    assert [code.text() for code in document.by_id("labels").find_all("code")] == [
        "region=eu",
        "site=berlin",
    ]
    assert document.by_id("current").get("data-pipeline-type") == "filtered"
    entries = document.by_id("node-history").find_all("li", data_change_id=True)
    assert [entry.get("data-change-id") for entry in entries] == ["2", "1"]
    newest = entries[0]
    assert newest.one("span", cls="from").text() == "raw"
    assert newest.one("strong", cls="to").text() == "filtered"
    assert newest.one("span", cls="who").text() == "bob"
    assert newest.one("span", cls="source").text() == "cli"
    assert "2026-12-03 05:00:00 UTC" in newest.one("span", cls="when").text()
    assert not document.find("form", cls="revert-form")  # the centre changes no node
    week = document.one("figure", data_window="week")
    assert week.find_all("rect")[-1].get("data-type") == "filtered"


def test_node_page_of_a_node_in_error_shows_its_error_and_last_pipeline(fleet):
    send(fleet, "edge-001", [], seq=2, labels={"region": "eu", "site": "berlin"},
         current={"error": {"code": 5, "message": "database is <locked>"}})  # fmt: skip
    document = page(fleet, "/nodes/edge-001")
    assert document.by_id("node-state").get("data-state") == "error"
    assert "database is <locked>" in document.by_id("node-error").text()  # text, not markup
    assert document.by_id("current").get("data-pipeline-type") == "filtered"
    assert document.one("figure", data_window="day").find_all("rect")[-1].get(
        "data-type") == "filtered"  # fmt: skip


def test_a_restore_is_shown_in_the_history(fleet):
    labels = {"region": "eu", "site": "berlin"}
    send(fleet, "edge-001", [change(3, "aggregated", "filtered")], seq=2, labels=labels)
    # The node's database was replaced by a backup holding changes 1 and 2 only.
    send(fleet, "edge-001", [], seq=3, labels=labels,
         current=change(1, "raw"))  # fmt: skip
    document = page(fleet, "/nodes/edge-001")
    event = document.one("li", cls="event")
    assert event.get("data-event") == "restore"
    assert "#3 back to #1" in event.text()
    assert document.by_id("current").get("data-pipeline-type") == "raw"
    assert document.by_id("restores").text().startswith("1")


@pytest.mark.parametrize("name", ["nobody", "<script>", "edge-001%00", "%E2%80%AEedge", "x" * 3000])
def test_an_unknown_node_is_404_in_one_line(fleet, name):
    answer = fleet.get(f"/nodes/{name}")
    assert answer.status_code == 404
    message = parse(answer.get_data(as_text=True)).by_id("error-message").text()
    assert message.startswith("no node called") and "\n" not in message
    assert "<script>" not in answer.get_data(as_text=True)  # escaped where it is repeated


def test_pages_carry_no_inline_script_or_style(fleet):
    for url in ("/", "/nodes/edge-001", "/?state=bogus"):
        answer = fleet.get(url)
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        document = parse(answer.get_data(as_text=True))
        assert all(script.get("src") for script in document.find_all("script"))
        assert not [element for element in document.iter() if "style" in element.attrs]
        assert not [e for e in document.iter() if any(a.startswith("on") for a in e.attrs)]


def test_reading_requires_a_login_when_configured(fleet_app, tmp_path):
    users = write_users(tmp_path / "users.htpasswd")
    # Read per request, as a restart with these settings would give them.
    fleet_app.config.update(
        READ_REQUIRES_LOGIN=True,
        USERS_FILE=str(users),
        LOGIN_REFUSAL_PAUSE=0,
        WTF_CSRF_ENABLED=False,
    )
    client = fleet_app.test_client()
    answer = client.get("/?state=stale")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=/?state%3Dstale")
    polled = client.get("/poll?since=0", headers={"HX-Request": "true"})
    assert polled.status_code == 204 and polled.headers["HX-Redirect"].startswith("/login")
    assert client.get("/nodes/edge-001").status_code == 302
    assert log_in(client).status_code == 302
    document = page(client, "/")
    assert document.by_id("operator-name").text() == "alice"
    assert document.find(id="fleet-filter")
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302
