"""``notify --fleet``'s options and settings, and the report it builds: every bad value is one
``Error:`` line (exit 2) and writes nothing; every report fits what the centre accepts."""

import base64
import json
import os
import sqlite3

import pytest
from clilib import with_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.accounts.signatures import derive_node_key
from webapp.core.errors import InvalidInput
from webapp.core.labels import parse_labels
from webapp.core.store import PipelineStore
from webapp.notify import report
from webapp.notify.fleet import FleetTarget, heartbeat_seconds, node_name, report_url
from webapp.notify.state import NotifyState

KEY = derive_node_key(
    "7c1f9e2a5b8d4036e9a1c7f2b5d8e03a6c9f1b4d7e2a5c8f0b3d6e9a2c5f8b1d", "edge-001"
)
CENTRE = "https://fleet.example.org"

BAD_OPTIONS = {
    "ftp url": (["--fleet", "ftp://fleet.example.org"], "--fleet: not an http:// or https://"),
    "no host": (["--fleet", "https://"], "--fleet: the URL names no host"),
    "space in url": (["--fleet", "https://fleet.example.org/a b"], "--fleet: the URL holds U+0020"),
    "query": (["--fleet", CENTRE + "/?token=x"], "without a query or fragment"),
    "bad port": (["--fleet", "https://fleet.example.org:99999"], "port is not a number"),
    "label without =": (["--label", "region"], "'region' is not KEY=VALUE"),
    "upper-case key": (["--label", "Region=eu"], "label key 'Region' must be"),
    "bidi value": (["--label", "site=\u202eberlin"], "label site must be one line"),
    "long value": (["--label", "site=" + "b" * 129], "label site is too long"),
    "key twice": (["--label", "a=1", "--label", "a=2"], "label a is given twice"),
    "65 labels": ([f"--label=k{n}=v" for n in range(65)], "at most 64 labels"),
    "node with space": (["--node", "edge 1"], "--node: the node name contains U+0020"),
    "node non-ascii": (["--node", "édge"], "--node: the node name contains U+00E9"),
    "node too long": (["--node", "e" * 65], "is longer than 64 characters"),
    "node empty": (["--node", ""], "--node: the node name is empty"),
    "node dash first": (["--node", "-edge"], "must start with a letter or digit"),
    "heartbeat nan": (["--heartbeat", "nan"], "--heartbeat (PIPELINE_FLEET_HEARTBEAT) must be"),
    "heartbeat 0": (["--heartbeat", "0"], "whole seconds from 5 to 86400 (got '0')"),
    "heartbeat 4": (["--heartbeat", "4"], "(got '4')"),
    "heartbeat huge": (["--heartbeat", "9" * 40], "whole seconds from 5 to 86400"),
    "heartbeat float": (["--heartbeat", "60.0"], "(got '60.0')"),
    "heartbeat arabic": (["--heartbeat", "٦٠"], "whole seconds from 5 to 86400"),
}


def clean(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)


def refused(result, message, tmp_path):
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not (tmp_path / "state.json").exists()
    assert not (tmp_path / "state.json.lock").exists()


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_fleet_options_are_one_error_line_and_write_nothing(
    cli, tmp_path, monkeypatch, args, message
):
    clean(monkeypatch)
    if "--fleet" not in args:
        args = ["--fleet", CENTRE, *args]
    result = cli(
        "notify", *args, "--state", tmp_path / "state.json", env={"PIPELINE_FLEET_KEY": KEY}
    )
    refused(result, message, tmp_path)


BAD_SETTINGS = {
    "labels": ({"PIPELINE_NODE_LABELS": "region=eu,oops"}, "'oops' is not KEY=VALUE"),
    "heartbeat": ({"PIPELINE_FLEET_HEARTBEAT": "inf"}, "PIPELINE_FLEET_HEARTBEAT) must be"),
    "node": ({"PIPELINE_NODE": "edge/1"}, "the node name contains U+002F"),
    "url": ({"PIPELINE_FLEET_URL": "fleet.example.org"}, "not an http:// or https:// URL"),
    "no key": ({"PIPELINE_FLEET_KEY": ""}, "set PIPELINE_FLEET_KEY or PIPELINE_FLEET_KEY_FILE"),
    "not whsec": ({"PIPELINE_FLEET_KEY": "sk_" + KEY[6:]}, "does not start with whsec_"),
    "short key": (
        {"PIPELINE_FLEET_KEY": "whsec_" + base64.b64encode(b"k" * 23).decode()},
        "holds 23 bytes (at least 24)",
    ),
    "bad base64": ({"PIPELINE_FLEET_KEY": "whsec_not*base64"}, "followed by standard base64"),
}


@pytest.mark.parametrize(("env", "message"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_fleet_settings_are_one_error_line(cli, tmp_path, monkeypatch, env, message):
    clean(monkeypatch)
    env = {"PIPELINE_FLEET_URL": CENTRE, "PIPELINE_FLEET_KEY": KEY, **env}
    result = with_settings(cli, tmp_path, monkeypatch, **env)(
        "notify", "--state", tmp_path / "state.json"
    )
    refused(result, message, tmp_path)


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, KEY, "may be read by every user of this machine; make it private (chmod 600"),
        (0o600, "", "is empty"),
        (0o600, "whsec_", "holds 0 bytes"),
        (None, KEY, "cannot read"),
    ],
)
def test_key_files_others_may_read_or_that_hold_no_key_are_refused(
    cli, tmp_path, monkeypatch, mode, content, message
):
    clean(monkeypatch)
    path = tmp_path / "fleet.key"
    if mode is not None:
        path.write_text(content + "\n")
        path.chmod(mode)
    env = {"PIPELINE_FLEET_URL": CENTRE, "PIPELINE_FLEET_KEY_FILE": str(path)}
    result = with_settings(cli, tmp_path, monkeypatch, **env)(
        "notify", "--state", tmp_path / "state.json"
    )
    refused(result, message, tmp_path)


def test_the_settings_give_the_target_the_options_replace():
    from webapp.notify.fleet import fleet_target

    config = {
        "FLEET_URL": "http://centre.example:8080/base/",
        "NODE": "edge-007",
        "NODE_LABELS": "region=eu, site=berlin",
        "FLEET_HEARTBEAT": 60,
        "FLEET_KEY": KEY,
    }
    target = fleet_target(config)
    assert target.centre.target == "http://centre.example:8080/base/api/fleet/report"
    assert (target.node, target.labels, target.heartbeat) == (
        "edge-007",
        {"region": "eu", "site": "berlin"},
        60,
    )
    assert not target.accept_rollouts and KEY not in repr(target)
    other = fleet_target(config, node="edge-008", labels=("site=paris",), heartbeat="15")
    assert (other.node, other.labels, other.heartbeat) == ("edge-008", {"site": "paris"}, 15)
    assert other.state_key != target.state_key  # one position per centre and node name
    assert fleet_target({"FLEET_KEY": KEY}) is None  # no URL: no fleet target


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_hostile_option_text_is_accepted_or_refused_never_crashes(text):
    for check in (node_name, heartbeat_seconds, report_url, lambda t: parse_labels([t], "--label")):
        try:
            check(text)
        except InvalidInput as error:
            assert "\n" not in str(error).strip() or "\n" in text


# -- the report ---------------------------------------------------------------------------------


def target(**fields):
    return FleetTarget(report_url(CENTRE), "edge-001", {"region": "eu"}, 60, KEY, **fields)


def depth(value) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max(map(depth, items), default=0)
    return 0


def test_a_never_set_database_reports_the_default_record(db_path):
    with PipelineStore(db_path) as store:
        current = report.current_record(store)
        data, carried = report.body(target(), 7, current, [])
    body = json.loads(data)
    assert body["current"] == {**PipelineStore(db_path).current().to_dict()}
    assert body["current"]["default"] is True and body["current"]["id"] is None
    assert (body["seq"], body["interval_s"], body["changes"], carried) == (7, 60, [], [])
    assert body["accept_rollouts"] is False and body["rollout"] is None
    assert body["agent"].startswith("pipeline-manager/")


def test_an_unusable_database_reports_its_error(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    with PipelineStore(tmp_path / "empty.db") as store:
        current = report.current_record(store)
    assert current["error"]["code"] == 5 and "empty" in current["error"]["message"]


def test_foreign_rows_fit_the_centre_rules_deep_huge_and_odd(db_path, store):
    store.set("filtered", updated_by="ops", reason="seed", source="cli")
    deep = "[" * 31 + "1" + "]" * 31  # deeper than a report may nest, shallower than ours refuses
    conn = sqlite3.connect(db_path)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_by, metadata) VALUES (?, ?, ?)",
        [
            ("raw", "tool", '{"deep": ' + deep + "}"),
            ("raw", "x" * 600_000, '{"reason": "' + "r" * 600_000 + '"}'),
            ("raw", b"\xff\xfe", "NaN"),
        ]
        + [("aggregated", f"bulk-{n}", '{"reason": "' + "b" * 3000 + '"}') for n in range(600)],
    )
    conn.commit()
    conn.close()
    changes = [report.record(c) for c in store.changes_after(0, report.MAX_CHANGES)]
    data, carried = report.body(target(), 1, report.current_record(store), changes)
    body = json.loads(data)
    assert len(data) <= report.MAX_BODY and depth(body) <= 32
    assert [c["id"] for c in body["changes"]] == [c["id"] for c in carried]
    assert 1 <= len(carried) < len(changes) <= report.MAX_CHANGES  # what fits; the rest follows
    assert carried == changes[: len(carried)]  # oldest first, none skipped


def test_a_change_too_large_alone_is_shortened_not_dropped(db_path, store):
    store.set("filtered", updated_by="ops", reason="r" * 2000, source="cli")
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, updated_by, metadata) VALUES ('raw', ?, ?)",
        ("w" * 700_000, json.dumps({"note": "n" * 700_000})),
    )
    conn.commit()
    conn.close()
    changes = [report.record(c) for c in store.changes_after(1, 10)]
    data, carried = report.body(target(), 2, report.current_record(store), changes)
    assert len(data) <= report.MAX_BODY and [c["id"] for c in carried] == [2]
    assert carried[0]["updated_by"].endswith("…") and len(carried[0]["updated_by"]) == 65536


def test_the_state_file_keeps_the_fleet_position_and_report_counter(tmp_path):
    path = tmp_path / "state.json"
    state = NotifyState.open(path)
    state.record(target().state_key, target().label, 41, seq=1234)
    state.close()
    again = NotifyState.open(path)
    assert again.entry(target().state_key)["seq"] == 1234
    assert again.acknowledged(target().state_key) == 41
    again.close()
    document = json.loads(path.read_text())
    document["webhooks"][target().state_key]["seq"] = -1
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match="not a notifier state"):
        NotifyState.open(path)
