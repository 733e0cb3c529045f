"""POST /api/fleet/report: what is stored, what is refused (with nothing stored), on both stores."""

import base64
import json
import logging
import time

import pytest
from fleetlib import FLEET_SECRET, REPORT_URL, post, record, report, signed
from prometheus_client.parser import text_string_to_metric_families

from webapp.accounts.signatures import derive_node_key, verify


def stored_nothing(store):
    summary = store.summary()
    return summary["nodes"] == 0 and summary["version"] == 0 and store.node("edge-001") is None


def test_a_report_is_stored_and_answered_signed(fleet_client, fleet_store):
    body = report(current=record(2, "filtered"), changes=[record(1), record(2, "filtered")])
    response = fleet_client.post(REPORT_URL, data=(signed(body))[0], headers=signed(body)[1])
    assert response.status_code == 200, response.json
    assert response.json["acknowledged_id"] == 2
    assert response.json["next_report_s"] >= 60
    key = derive_node_key(FLEET_SECRET, "edge-001")
    verify(key, dict(response.headers), response.data, time.time())  # raises if unsigned
    node = fleet_store.node("edge-001")
    assert (node.pipeline_type, node.state, node.labels) == (
        "filtered",
        "reporting",
        {"region": "eu"},
    )
    changes, _ = fleet_store.changes("edge-001")
    assert [c.id for c in changes] == [2, 1]


def test_a_never_set_node_reports_its_default_record(fleet_client, fleet_store):
    default = {**record(), "id": None, "default": True, "updated_at": None, "updated_by": None}
    response = post(fleet_client, report(current=default), node="edge-001")
    assert response.status_code == 200, response.json
    assert response.json["acknowledged_id"] == 0
    assert fleet_store.node("edge-001").pipeline_type == "raw"


def test_a_foreign_row_with_control_characters_does_not_block_a_node(fleet_client, fleet_store):
    """Another tool's row may hold any text: refusing it would refuse the node forever."""
    odd = record(1, who="ops\n<script>x</script>\x1b[2J", reason="line\nbreak")
    response = post(fleet_client, report(current=odd, changes=[odd]), node="edge-001")
    assert response.status_code == 200, response.json
    (change,), _ = fleet_store.changes("edge-001")
    assert change.record["updated_by"] == "ops\n<script>x</script>\x1b[2J"  # as reported
    page = fleet_client.get("/nodes/edge-001").get_data(as_text=True)
    assert "<script>x</script>" not in page and "&lt;script&gt;x" in page  # shown escaped


def test_a_replay_answers_200_and_changes_nothing(fleet_client, fleet_store):
    data, headers = signed(report(current=record(1), changes=[record(1)]))
    assert fleet_client.post(REPORT_URL, data=data, headers=headers).status_code == 200
    version = fleet_store.version()
    again = fleet_client.post(REPORT_URL, data=data, headers=headers)
    assert again.status_code == 200 and again.json["acknowledged_id"] == 1
    assert fleet_store.version() == version
    assert fleet_store.node("edge-001").last_report_at is not None


def test_an_older_report_never_moves_a_node_backwards(fleet_client, fleet_store):
    now = int(time.time())
    newer = report(current=record(2, "filtered"), changes=[record(1), record(2, "filtered")], seq=5)
    assert post(fleet_client, newer, timestamp=now).status_code == 200
    older = report(current=record(1, "raw"), changes=[record(1)], seq=4)
    answer = post(fleet_client, older, timestamp=now - 10)
    assert answer.status_code == 200 and answer.json["acknowledged_id"] == 2
    same_second_lower_seq = post(fleet_client, older, timestamp=now)
    assert same_second_lower_seq.json["acknowledged_id"] == 2
    assert fleet_store.node("edge-001").pipeline_type == "filtered"


def test_a_restored_node_starts_an_epoch_and_shows_the_restored_state(fleet_client, fleet_store):
    now = int(time.time())
    changes = [record(1), record(2, "filtered"), record(3, "aggregated")]
    post(
        fleet_client, report(current=record(3, "aggregated"), changes=changes, seq=1), timestamp=now
    )
    restored = post(fleet_client, report(current=record(2, "filtered"), seq=2), timestamp=now + 1)
    assert restored.status_code == 200 and restored.json["acknowledged_id"] == 2
    node = fleet_store.node("edge-001")
    assert (node.pipeline_type, node.epoch, node.change_id) == ("filtered", 1, 2)
    [event] = fleet_store.events("edge-001")
    assert (event.kind, event.detail["from_id"], event.detail["to_id"]) == ("restore", 3, 2)
    # The restored database's next change reuses id 3: a new row in the new epoch.
    post(
        fleet_client,
        report(current=record(3, "raw"), changes=[record(3, "raw")], seq=3),
        timestamp=now + 2,
    )
    changes, _ = fleet_store.changes("edge-001")
    assert [(c.epoch, c.id, c.record["pipeline_type"]) for c in changes][:2] == [
        (1, 3, "raw"),
        (0, 3, "aggregated"),
    ]


def test_an_error_report_keeps_the_type_and_sets_the_state(fleet_client, fleet_store):
    post(fleet_client, report(current=record(1, "filtered"), seq=1), timestamp=int(time.time()) - 1)
    error = {"error": {"code": 5, "message": "database is locked"}}
    assert post(fleet_client, report(current=error, seq=2)).status_code == 200
    node = fleet_store.node("edge-001")
    assert (node.state, node.pipeline_type, node.error["code"]) == ("error", "filtered", 5)
    assert fleet_store.summary()["by_state"]["error"] == 1


def test_next_report_spreads_a_large_fleet(fleet_db, tmp_path):
    from fleetfixtures import make_fleet_app

    app = make_fleet_app(fleet_db, tmp_path, FLEET_REPORT_RATE=1)
    client = app.test_client()
    for number in range(3):
        answer = post(client, report(f"edge-{number}", interval_s=5))
    assert answer.json["next_report_s"] == 5  # 3 nodes at 1 report/s: 3 s < their 5 s
    for number in range(3, 8):
        answer = post(client, report(f"edge-{number}", interval_s=5))
    assert answer.json["next_report_s"] == 8
    app.extensions["fleet.store"][1].close()


def forged(body):
    data, headers = signed(body)
    mac = bytearray(base64.b64decode(headers["webhook-signature"][3:]))
    mac[0] ^= 1
    return data, {**headers, "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def other_nodes_key(body):
    return signed(body, key=derive_node_key(FLEET_SECRET, "edge-002"))


def skewed(seconds):
    return lambda body: signed(body, timestamp=int(time.time()) + seconds)


def non_ascii_digits(body):
    data, headers = signed(body)
    arabic = "".join(chr(0x0660 + int(d)) for d in headers["webhook-timestamp"])
    return data, {**headers, "webhook-timestamp": arabic}


def raw_body(data):
    return lambda _body: signed(data, node="edge-001")


def deep(levels):
    return b'{"node": "edge-001", "x": ' + b"[" * levels + b"]" * levels + b"}"


BAD = {
    "forged": (forged, 401, "bad_signature"),
    "another node's key": (other_nodes_key, 401, "bad_signature"),
    "clock ahead": (skewed(301), 401, "timestamp_skew"),
    "clock behind": (skewed(-3600), 401, "timestamp_skew"),
    "non-ASCII digits": (non_ascii_digits, 401, "malformed_headers"),
    "invalid UTF-8": (raw_body(b'{"node": "edge-001\xff"}'), 400, "malformed_json"),
    "deep JSON": (raw_body(deep(33)), 400, "malformed_json"),
    "very deep JSON": (raw_body(deep(100_000)), 400, "malformed_json"),
    "duplicate keys": (
        raw_body(b'{"node": "edge-001", "node": "edge-002"}'),
        400,
        "malformed_json",
    ),
    "NaN": (raw_body(b'{"node": "edge-001", "interval_s": NaN}'), 400, "malformed_json"),
    "not an object": (raw_body(b"[1]"), 400, "malformed_json"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_hostile_reports_are_refused_with_nothing_stored(fleet_client, fleet_store, case):
    make, status, reason = BAD[case]
    data, headers = make(report())
    response = fleet_client.post(REPORT_URL, data=data, headers=headers)
    assert response.status_code == status, response.data
    assert response.json["reason"] == reason
    assert "\n" not in response.get_data(as_text=True).strip()
    if status == 401:
        assert abs(response.json["server_timestamp"] - time.time()) < 60
    assert stored_nothing(fleet_store)


INVALID = {
    "node name with a space": {"node": "edge 001"},
    "node name too long": {"node": "e" * 65},
    "bidi in a label": {"labels": {"site": "ber\u202elin"}},
    "upper-case label key": {"labels": {"Region": "eu"}},
    "65 labels": {"labels": {f"k{n}": "v" for n in range(65)}},
    "interval too short": {"interval_s": 1},
    "interval a bool": {"interval_s": True},
    "huge seq": {"seq": 2**64},
    "changes out of order": {"changes": [record(2), record(1)]},
    "501 changes": {"changes": [record(n) for n in range(1, 502)]},
    "record without id": {"current": {"pipeline_type": "raw"}},
    "NUL in updated_by": {"current": record(who="alice\x00bob")},
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_reports_are_refused_with_nothing_stored(fleet_client, fleet_store, case):
    body = {**report(), **INVALID[case]}
    response = post(fleet_client, body, node="edge-001")
    assert response.status_code == 400, response.data
    assert response.json["reason"] in ("invalid_report", "malformed_json")
    assert stored_nothing(fleet_store)


def test_oversized_bodies_are_refused_before_reading(fleet_client, fleet_store):
    padding = "x" * (1 << 20)
    data, headers = signed({**report(), "agent": "pm", "padding": padding})
    response = fleet_client.post(REPORT_URL, data=data, headers=headers)
    assert response.status_code == 413 and response.json["reason"] == "too_large"
    assert stored_nothing(fleet_store)


def refused(client, reason) -> float:
    """Return /metrics' count of refusals for ``reason`` (0 before the first)."""
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fleet_reports_refused_total" and sample.labels == {"reason": reason}:
                return sample.value
    return 0.0


def test_refusals_are_counted_by_reason_and_logged_once_a_minute(fleet_client, caplog):
    caplog.set_level(logging.WARNING)
    before = refused(fleet_client, "bad_signature")
    for _ in range(3):
        fleet_client.post(REPORT_URL, data=forged(report())[0], headers=forged(report())[1])
    lines = [r for r in caplog.records if "refused (bad_signature)" in r.getMessage()]
    assert len(lines) == 1
    assert refused(fleet_client, "bad_signature") == before + 3


def test_a_centre_without_a_fleet_secret_refuses_reports(fleet_db, tmp_path):
    from fleetfixtures import make_fleet_app

    app = make_fleet_app(fleet_db, tmp_path, FLEET_SECRET=None)
    response = post(app.test_client(), report())
    assert response.status_code == 503 and response.json["reason"] == "unavailable"
    assert json.loads(response.data)["error"]
