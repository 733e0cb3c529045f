"""Liveness, readiness and the audit log line, with the test client on real SQLite files."""

import json
import logging
import os
import sqlite3
import subprocess
import sys

import pytest
from live import LIVE_SECRET_KEY, ROOT

from webapp import create_app
from webapp.core.store import PipelineStore

OLD_TOOL_SCHEMA = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY, pipeline_type TEXT, "
    "created_at TEXT, created_by TEXT, is_active INTEGER)"
)


def app_on(path):
    return create_app({"TESTING": True, "DB": str(path), "SECRET_KEY": "test-secret"})


def test_healthz_answers_without_touching_the_database(tmp_path):
    missing = tmp_path / "sensor_data.db"
    response = app_on(missing).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert list(tmp_path.iterdir()) == []


def test_readyz_reports_a_sensor_database_without_our_table(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ready"
    # A read never switches the file's journal mode: the first change does.
    assert response.json["journal_mode"] == "delete"
    assert response.json["pipeline_config"].startswith("absent")


def test_readyz_reports_the_table_once_a_change_exists(client, store):
    store.set("filtered", updated_by="ops")
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["pipeline_config"] == "present"


def test_readyz_on_a_missing_database_is_503_and_creates_nothing(tmp_path):
    missing = tmp_path / "sensor_data.db"
    response = app_on(missing).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert "database not found" in response.json["reason"]
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (lambda path: path.write_bytes(b"not a database, just some text\n" * 40), "not an SQLite"),
        (lambda path: path.mkdir(), "is a directory"),
        (
            lambda path: sqlite3.connect(path).execute(OLD_TOOL_SCHEMA).connection.close(),
            "another tool's columns",
        ),
    ],
    ids=["garbage", "directory", "foreign-schema"],
)
def test_readyz_explains_an_unusable_database(tmp_path, prepare, reason):
    path = tmp_path / "sensor_data.db"
    prepare(path)
    response = app_on(path).test_client().get("/readyz")
    assert response.status_code == 503
    assert reason in response.json["reason"]


def test_readyz_leaves_a_foreign_database_in_its_journal_mode(tmp_path):
    path = tmp_path / "sensor_data.db"
    sqlite3.connect(path).execute(OLD_TOOL_SCHEMA).connection.close()
    app_on(path).test_client().get("/readyz")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_create_app_opens_no_database_file(db_path):
    """gunicorn forks after importing the app (with preload): nothing may be open by then."""
    script = (
        "import os, sys\n"
        "from webapp import create_app\n"
        "create_app()\n"
        "fds = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')\n"
        "       if os.path.exists(f'/proc/self/fd/{fd}')]\n"
        "print('\\n'.join(fds))\n"
    )
    env = {**os.environ, "PIPELINE_DB": str(db_path), "PIPELINE_SECRET_KEY": LIVE_SECRET_KEY}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert str(db_path.parent) not in result.stdout
    assert not (db_path.parent / "sensor_data.db-wal").exists()


def audit_lines(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "pipeline.audit"]


def test_each_change_logs_one_json_line(store, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.audit")
    first = store.set("filtered", updated_by="ops", reason='say "why"', source="web")
    store.set("filtered", updated_by="ops")  # already current: no change, no line
    store.set("aggregated", updated_by="bot", source="api")
    store.revert(first.change.id, updated_by="ops", source="web")

    lines = audit_lines(caplog)
    assert [(line["from"], line["to"]) for line in lines] == [
        (None, "filtered"),
        ("filtered", "aggregated"),
        ("aggregated", "filtered"),
    ]
    assert lines[0] == {
        "event": "pipeline_change",
        "id": first.change.id,
        "who": "ops",
        "from": None,
        "to": "filtered",
        "bucket": "enriched",
        "reason": 'say "why"',
        "source": "web",
        "at": lines[0]["at"],
    }
    assert lines[0]["at"].endswith("Z")
    assert lines[1]["source"] == "api" and lines[1]["who"] == "bot"
    assert lines[2]["reverts_to"] == first.change.id


def test_the_cli_path_logs_the_change_too(runner, db_path, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.audit")
    args = ["pipeline", "set", "schematized", "--by", "cli-user", "--reason", "r"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    (line,) = audit_lines(caplog)
    assert (line["who"], line["to"], line["source"]) == ("cli-user", "schematized", "cli")
    with PipelineStore(db_path) as store:
        assert line["id"] == store.current().id


def test_probes_and_metrics_stay_open_when_reading_requires_login(db_path):
    """Orchestrators and scrapers carry no login."""
    app = create_app(
        {"TESTING": True, "DB": str(db_path), "SECRET_KEY": "k", "READ_REQUIRES_LOGIN": True}
    )
    client = app.test_client()
    assert client.get("/").status_code == 302  # the dashboard does require it
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path
