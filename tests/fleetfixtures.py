"""Fixtures of the fleet suite, loaded as a plugin by tests/conftest.py (a second conftest.py
would take the module name ``conftest`` that other tests import from): every test that takes
``fleet_db`` runs on SQLite and on a real PostgreSQL started for the session (tests/pglib.py).
Under CI=true PostgreSQL must run."""

import pytest
from fleetlib import FLEET_SECRET
from pglib import postgres, store_setting  # noqa: F401 (postgres: a fixture)

from webapp.fleet import create_app


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
