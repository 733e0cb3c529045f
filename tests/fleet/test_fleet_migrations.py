"""The store's schema: created on an empty store at start, migrated by ``fleet db upgrade``,
``/readyz`` 503 while a migration is due; and the ``fleet keys`` command. Both backends."""

import time

import pytest
from fleetfixtures import make_fleet_app
from fleetlib import FLEET_SECRET, post, report
from live import LIVE_SECRET_KEY

from webapp.accounts.signatures import derive_node_key
from webapp.fleet.app import ConfigError
from webapp.fleet.engine import database_url
from webapp.fleet.migrate import schema_status, script, upgrade
from webapp.fleet.report import read_report
from webapp.fleet.store import FleetStore


@pytest.fixture
def make_app(empty_fleet_db, tmp_path):
    apps = []

    def make(**config):
        apps.append(make_fleet_app(empty_fleet_db, tmp_path, **config))
        return apps[-1]

    yield make
    for app in apps:
        if app.extensions.get("fleet.store"):
            app.extensions["fleet.store"][1].close()


def at_revision(setting, revision):
    store = FleetStore(database_url(setting), pool_size=1)
    upgrade(store.engine, revision)
    return store


def test_an_empty_store_gets_its_schema_at_start(make_app):
    client = make_app().test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["revision"] == script().get_current_head()
    assert post(client, report()).status_code == 200


def test_an_old_store_waits_for_fleet_db_upgrade(make_app, empty_fleet_db):
    store = at_revision(empty_fleet_db, "0001")
    store.ingest(read_report(report()), "msg_1", int(time.time()))
    app = make_app()
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["revision"] == "0001" and "fleet db upgrade" in ready.json["reason"]
    result = app.test_cli_runner().invoke(args=["fleet", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    head = script().get_current_head()
    assert f"0001 -> {head}" in result.output
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/fleet/nodes/edge-001").json["node"] == "edge-001"  # data kept
    again = app.test_cli_runner().invoke(args=["fleet", "db", "upgrade"])
    assert again.exit_code == 0 and f"already at revision {head}" in again.output
    assert schema_status(store.engine).ready
    store.close()


def test_a_store_from_a_newer_centre_is_refused(make_app, empty_fleet_db):
    store = at_revision(empty_fleet_db, "head")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    app = make_app()
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503 and "unknown to this code" in ready.json["reason"]
    result = app.test_cli_runner().invoke(args=["fleet", "db", "upgrade"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output


def test_an_unreachable_store_is_a_503_line(tmp_path):
    from live import free_port

    app = make_fleet_app(f"postgresql://nobody@127.0.0.1:{free_port()}/fleet", tmp_path)
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "unavailable" in ready.json["reason"]
    api = client.get("/api/fleet/summary")
    assert api.status_code == 503 and "\n" not in api.json["error"]
    refused = post(client, report())
    assert refused.status_code == 503 and refused.json["reason"] == "unavailable"


def test_fleet_keys_prints_each_names_key(make_app):
    runner = make_app().test_cli_runner()
    result = runner.invoke(args=["fleet", "keys"], input="edge-001\n\nedge-002\n")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"edge-001 {derive_node_key(FLEET_SECRET, 'edge-001')}",
        f"edge-002 {derive_node_key(FLEET_SECRET, 'edge-002')}",
    ]


@pytest.mark.parametrize("bad", ["edge 1", "-rf", "edge\u202e1", "e" * 65])
def test_fleet_keys_refuses_a_bad_name_before_printing_any_key(make_app, bad):
    result = make_app().test_cli_runner().invoke(args=["fleet", "keys"], input=f"ok-1\n{bad}\n")
    assert result.exit_code == 2
    assert "line 2" in result.output and "whsec_" not in result.output


def test_fleet_keys_needs_the_secret(make_app):
    result = (
        make_app(FLEET_SECRET=None).test_cli_runner().invoke(args=["fleet", "keys"], input="a\n")
    )
    assert result.exit_code == 1 and "PIPELINE_FLEET_SECRET" in result.output


def test_a_weak_fleet_secret_stops_a_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_SECRET_KEY", LIVE_SECRET_KEY)
    monkeypatch.setenv("PIPELINE_FLEET_SECRET", "secretsecretsecretsecretsecretsecret")
    monkeypatch.setenv("PIPELINE_FLEET_DB", str(tmp_path / "fleet.db"))
    from webapp.fleet import create_app

    with pytest.raises(ConfigError, match="PIPELINE_FLEET_SECRET"):
        create_app()
    assert not (tmp_path / "fleet.db").exists()
