"""A rollout's desire on the node (issue 18): believed only in an answer signed with the node's key
within the tolerance; applied through the node's real store with compare-and-set, so a local
change wins; the outcome is one line for the next report."""

import json
import sqlite3
import time

import pytest

from webapp.accounts.signatures import derive_node_key, new_message_id, sign
from webapp.core.store import PipelineStore
from webapp.notify import report
from webapp.notify.rollout import MAX_MESSAGE, apply_desire
from webapp.notify.webhooks import Answer, DeliveryFailed

SECRET = "7c1f9e2a5b8d4036e9a1c7f2b5d8e03a6c9f1b4d7e2a5c8f0b3d6e9a2c5f8b1d"
KEY = derive_node_key(SECRET, "edge-001")


def desire(expect_id, pipeline_type="filtered", **fields):
    return {
        "rollout": 12,
        "pipeline_type": pipeline_type,
        "expect_id": expect_id,
        "reason": "EU nodes filter",
        "by": "alice",
        **fields,
    }


def answer(body: dict, key=KEY, timestamp=None, signed=True) -> Answer:
    data = json.dumps(body).encode()
    headers = {}
    if signed:
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = sign(key, new_message_id(), stamp, data)
    return Answer(200, headers, data)


ACK = {"acknowledged_id": 4, "next_report_s": 60, "server_time": "2026-12-03T05:00:00.000Z"}


def test_a_signed_answer_carries_its_desire():
    got = report.acknowledgement(answer({**ACK, "desired": desire(4)}), KEY, int(time.time()))
    assert (got.acknowledged_id, got.next_report_s, got.desired) == (4, 60.0, desire(4))


@pytest.mark.parametrize(
    ("made", "why"),
    [
        (answer({**ACK, "desired": desire(4)}, signed=False), "malformed_headers"),
        (answer({**ACK, "desired": desire(4)}, key=derive_node_key(SECRET, "x")), "bad_signature"),
        (answer({**ACK, "desired": desire(4)}, timestamp=int(time.time()) - 301), "timestamp_skew"),
        (answer({**ACK, "desired": desire(4)}, timestamp=int(time.time()) + 900), "timestamp_skew"),
    ],
    ids=["unsigned", "another key", "too old", "from the future"],
)
def test_a_desire_in_an_answer_not_signed_right_now_is_refused_whole(made, why):
    with pytest.raises(DeliveryFailed, match=why) as refused:
        report.acknowledgement(made, KEY, int(time.time()))
    assert "\n" not in str(refused.value)


def test_a_tampered_desire_breaks_the_signature():
    good = answer({**ACK, "desired": desire(4)})
    forged = Answer(200, good.headers, good.body.replace(b"filtered", b"raw"))
    with pytest.raises(DeliveryFailed, match="bad_signature"):
        report.acknowledgement(forged, KEY, int(time.time()))


def test_a_desire_is_applied_as_a_normal_change_naming_the_rollout(store):
    base = store.set("raw", updated_by="ops", reason="start", source="cli").change
    outcome = apply_desire(store, desire(base.id))
    change = store.current()
    assert outcome == {
        "rollout": 12,
        "outcome": "applied",
        "change_id": change.id,
        "message": f"set to filtered (change #{change.id})",
    }
    assert change.pipeline_type == "filtered" and change.updated_by == "fleet:alice (rollout 12)"
    assert change.metadata["rollout"] == 12 and change.source == "fleet"
    assert change.reason == "EU nodes filter" and change.previous == "raw"


def test_a_local_change_since_expect_id_wins_and_is_a_conflict(store):
    base = store.set("raw", updated_by="ops", reason="start", source="cli").change
    local = store.set("aggregated", updated_by="bob", reason="local fix", source="web").change
    outcome = apply_desire(store, desire(base.id))
    assert outcome["outcome"] == "conflict" and outcome["change_id"] is None
    assert f"changed since version {base.id}" in outcome["message"]
    assert store.current() == local  # nothing written


def test_a_node_already_running_the_type_reports_applied_without_writing(store):
    done = store.set("filtered", updated_by="ops", reason="done by hand", source="cli").change
    outcome = apply_desire(store, desire(done.id - 1 if done.id > 1 else 0))
    assert outcome["outcome"] == "applied" and outcome["change_id"] == done.id
    assert store.current() == done


def test_a_type_the_nodes_table_refuses_is_an_error(tmp_path):
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type "
            "TEXT NOT NULL CHECK(pipeline_type IN ('raw', 'filtered')), updated_at TIMESTAMP NOT "
            "NULL DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, metadata TEXT)"
        )
    conn.close()
    with PipelineStore(path) as store:
        outcome = apply_desire(store, desire(0, "aggregated"))
        assert outcome["outcome"] == "error" and "aggregated" in outcome["message"]
        assert store.current().is_default


@pytest.mark.parametrize(
    "fields",
    [
        {"pipeline_type": None},
        {"pipeline_type": "sideways"},
        {"expect_id": -1},
        {"expect_id": "4"},
        {"expect_id": True},
        {"by": "alice\u202e"},
        {"by": None},
        {"reason": ["x"]},
        {"reason": "line\nbreak"},
        {"reason": "r" * 5000},
    ],
)
def test_a_malformed_desire_is_an_error_and_writes_nothing(store, fields):
    outcome = apply_desire(store, {**desire(0), **fields})
    assert outcome["outcome"] == "error" and outcome["rollout"] == 12
    assert len(outcome["message"]) <= MAX_MESSAGE and outcome["message"].isprintable()
    assert store.current().is_default


@pytest.mark.parametrize("rollout", [None, "12", 0, -3, True, 2**63, 1.5])
def test_a_desire_without_a_rollout_id_is_ignored(store, rollout):
    assert apply_desire(store, desire(0, rollout=rollout)) is None
    assert store.current().is_default
