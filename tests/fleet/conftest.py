"""Fixtures of the fleet suite: every test that takes ``fleet_db`` runs on SQLite and on a real
PostgreSQL started for the session (tests/pglib.py). Under CI=true PostgreSQL must run."""

import os

import pytest
from fleetlib import FLEET_SECRET
from pglib import PostgresServer, binaries

from webapp.fleet import create_app
from webapp.fleet.engine import database_url
from webapp.fleet.migrate import upgrade
from webapp.fleet.store import FleetStore


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole run (initdb + pg_ctl in a temporary directory)."""
    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb is missing: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)")
    server = PostgresServer().start()
    # One migrated database copied for each test (CREATE DATABASE ... TEMPLATE): migrating
    # every test's database would cost seconds each. Tests of migrations take empty ones.
    template = server.database()
    store = FleetStore(database_url(template), pool_size=1)
    upgrade(store.engine)
    store.close()
    server.template = template.rsplit("/", 1)[1]
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def fleet_db(backend, request, tmp_path):
    """The fleet store's setting: a SQLite path, or a fresh PostgreSQL database's URL (migrated)."""
    yield from store_setting(backend, request, tmp_path, migrated=True)


@pytest.fixture
def empty_fleet_db(backend, request, tmp_path):
    """Like ``fleet_db``, with nothing in it (no schema)."""
    yield from store_setting(backend, request, tmp_path, migrated=False)


def store_setting(backend, request, tmp_path, migrated):
    if backend == "sqlite":
        yield str(tmp_path / "fleet.db")
        return
    server = request.getfixturevalue("postgres")
    url = server.database(server.template if migrated else None)
    yield url
    server.drop(url)


def make_fleet_app(fleet_db, tmp_path, **config):
    return create_app(
        {
            "TESTING": True,
            "FLEET_DB": fleet_db,
            "FLEET_SECRET": FLEET_SECRET,
            "SECRET_KEY": "test-secret",
            "STATE_DIR": str(tmp_path / "state"),
            **config,
        }
    )


@pytest.fixture
def fleet_app(fleet_db, tmp_path, monkeypatch):
    for name in ("PIPELINE_FLEET_DB", "PIPELINE_FLEET_SECRET", "PIPELINE_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    app = make_fleet_app(fleet_db, tmp_path)
    yield app
    held = app.extensions.get("fleet.store")
    if held:
        held[1].close()


@pytest.fixture
def fleet_client(fleet_app):
    return fleet_app.test_client()


@pytest.fixture
def fleet_store(fleet_app):
    """The app's store (opened, schema created), for reading what ingest stored."""
    from webapp.fleet.db import get_store

    with fleet_app.app_context():
        return get_store()
