"""Shared fixtures: a real sensor-like SQLite file per test, the app, its client and runner."""

import os
import sqlite3

import pytest

from webapp import create_app
from webapp.core.store import PipelineStore

# pytester: tests/live/test_browser.py checks the CI hook below in a sub-run; fleetfixtures: the
# fleet suite's fixtures (both store backends), shared by tests/fleet/ and tests/live/.
pytest_plugins = ["pytester", "fleetfixtures"]

SENSOR_SCHEMA = (
    "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "sensor_id TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL)"
)


def make_sensor_db(path):
    """Create a database like the sensor writer's: its own table, no pipeline_config yet."""
    conn = sqlite3.connect(path)
    conn.execute(SENSOR_SCHEMA)
    conn.execute(
        "INSERT INTO sensor_readings (sensor_id, value, recorded_at) "
        "VALUES ('s-1', 21.5, '2026-11-25T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def db_path(tmp_path):
    """Path of a fresh sensor database in ``tmp_path``."""
    return make_sensor_db(tmp_path / "sensor_data.db")


@pytest.fixture
def store(db_path):
    with PipelineStore(db_path, write_timeout=5) as store:
        yield store


@pytest.fixture
def app(db_path, tmp_path, monkeypatch):
    for name in ("PIPELINE_DB", "PIPELINE_USERS_FILE", "PIPELINE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return create_app(
        {
            "TESTING": True,
            "DB": str(db_path),
            "SECRET_KEY": "test-secret",
            "STATE_DIR": str(tmp_path / "state"),  # never the checkout's instance/
        }
    )


@pytest.fixture(params=["pipeline-manager", "flask"])
def cli(request, app, db_path, monkeypatch):
    """The ``pipeline`` group through each entrance (tests/clilib.py), on ``db_path``."""
    from clilib import Entrance

    for name in ("PIPELINE_DB", "PIPELINE_REQUIRE_REASON", "PIPELINE_WRITE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return Entrance(request.param, app, db_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (``CI=true``) a skipped browser test is a failure: CI must run them all."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("CI") == "true"
        and item.get_closest_marker("browser") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"browser test skipped under CI=true, which counts as a failure: {reason}"
    return report


@pytest.fixture
def web_app(db_path, tmp_path, monkeypatch):
    """The app with operators alice and bob (a bcrypt users file), CSRF off: tests/weblib.py."""
    from weblib import make_app

    return make_app(db_path, tmp_path, monkeypatch)


@pytest.fixture
def operator(web_app):
    """A test client of ``web_app`` logged in as alice."""
    from weblib import log_in

    client = web_app.test_client()
    assert log_in(client).status_code == 302
    return client


def database_with(path, *types):
    """Write a separate database whose history holds ``types`` (a backup to restore)."""
    make_sensor_db(path)
    with PipelineStore(path) as store:
        for pipeline_type in types:
            store.set(pipeline_type, updated_by="backup", reason="r")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, as a backup is
    conn.close()
    return path


def checkpoint(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright, shared by a module (skipped when not installed)."""
    from browser_support import launch_chromium

    with launch_chromium() as browser:
        yield browser
