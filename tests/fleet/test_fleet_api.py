"""The centre's JSON API, exports, probes and metrics, on SQLite and PostgreSQL."""

import csv
import io
import json

import pytest
from fleetlib import post, record, report
from live import metric


@pytest.fixture
def fleet(fleet_client):
    """A small fleet: 60 nodes in two regions, one running another tool's type."""
    for n in range(60):
        labels = {"region": "eu" if n % 2 else "us"}
        assert post(fleet_client, report(f"edge-{n:03d}", labels=labels)).status_code == 200
    post(fleet_client, report("other", current=record(1, "foreign"), labels={"region": "=cmd"}))
    return fleet_client


def test_nodes_page_with_a_cursor_and_filters(fleet):
    first = fleet.get("/api/fleet/nodes?selector=region=eu&limit=20").json
    assert len(first["nodes"]) == 20 and first["next_before"] == "edge-039"
    second = fleet.get(
        f"/api/fleet/nodes?selector=region=eu&limit=20&before={first['next_before']}"
    )
    assert [n["node"] for n in second.json["nodes"]] == [f"edge-{n:03d}" for n in range(41, 60, 2)]
    assert second.json["next_before"] is None
    node = first["nodes"][0]
    assert set(node) >= {
        "node",
        "labels",
        "state",
        "pipeline_type",
        "managed",
        "last_report_at",
        "interval_s",
        "agent",
        "current",
        "sync",
    }
    assert node["last_report_at"].endswith("Z") and node["sync"] is None


def test_default_page_is_fifty(fleet):
    assert len(fleet.get("/api/fleet/nodes").json["nodes"]) == 50


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=٣", "state=sleeping", "selector=region", "before=a%00b"],
)
def test_bad_queries_are_400_json(fleet_client, query):
    response = fleet_client.get(f"/api/fleet/nodes?{query}")
    assert response.status_code == 400 and "error" in response.json


def test_one_node_with_its_changes_newest_first(fleet_client):
    changes = [record(1), record(2, "filtered")]
    post(fleet_client, report(current=record(2, "filtered"), changes=changes))
    body = fleet_client.get("/api/fleet/nodes/edge-001").json
    assert body["node"] == "edge-001" and body["pipeline_type"] == "filtered"
    assert [c["id"] for c in body["changes"]] == [2, 1]
    assert fleet_client.get("/api/fleet/nodes/nobody").status_code == 404
    for hostile in ("edge-001%00", "edge%E2%80%AE1", "e" * 300):
        assert fleet_client.get(f"/api/fleet/nodes/{hostile}").status_code == 404


def test_summary_counts_types_states_and_labels(fleet):
    body = fleet.get("/api/fleet/summary").json
    assert body["nodes"] == 61
    assert body["by_type"]["raw"] == 60 and body["unmanaged"] == {"foreign": 1}
    assert body["by_state"] == {"reporting": 61, "stale": 0, "error": 0}
    assert body["by_label"]["region"] == {"eu": 30, "us": 30, "=cmd": 1}


def test_csv_export_streams_every_node_with_formulas_neutralised(fleet):
    response = fleet.get("/api/fleet/nodes.csv")
    assert response.is_streamed or response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 61
    other = next(row for row in rows if row["node"] == "other")
    assert other["labels"] == "region==cmd" and other["managed"] == "false"
    assert (
        fleet.get("/api/fleet/nodes.csv?selector=region=us").get_data(as_text=True).count("\n")
        == 31
    )


def test_json_export_is_the_api_node_objects(fleet):
    nodes = json.loads(fleet.get("/api/fleet/nodes.json?name_prefix=edge-00").data)
    assert [n["node"] for n in nodes] == [f"edge-00{n}" for n in range(10)]


def test_probes_and_metrics(fleet):
    from webapp.fleet.migrate import script

    assert fleet.get("/healthz").json == {"status": "ok"}
    ready = fleet.get("/readyz")
    assert ready.status_code == 200 and ready.json["revision"] == script().get_current_head()
    text = fleet.get("/metrics").get_data(as_text=True)
    assert 'fleet_nodes{state="reporting"} 61.0' in text
    assert 'fleet_nodes_by_type{managed="0",pipeline_type="foreign"} 1.0' in text
    # Counters are per process (summed over workers by gunicorn's multiprocess directory).
    before = metric(text, "fleet_reports_accepted_total")
    post(fleet, report("edge-999"))
    after = metric(fleet.get("/metrics").get_data(as_text=True), "fleet_reports_accepted_total")
    assert after == before + 1


def test_reads_need_a_login_when_configured(fleet_db, tmp_path):
    from fleetfixtures import make_fleet_app

    app = make_fleet_app(fleet_db, tmp_path, READ_REQUIRES_LOGIN=True)
    client = app.test_client()
    assert client.get("/api/fleet/nodes").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert post(client, report()).status_code == 200  # reports authenticate themselves
    app.extensions["fleet.store"][1].close()
