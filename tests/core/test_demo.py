"""webapp/core/demo.py: the embedded demo database exists from the first use of the default,
like a sensor node's file; a named path is never created."""

import sqlite3
import subprocess
import sys

import pytest

from webapp.core import config, demo
from webapp.core.errors import DatabaseUnusable
from webapp.core.schema import SCHEMA
from webapp.core.store import PipelineStore


def query(path, sql):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    """Point the embedded demo database at a temporary checkout's ``instance/pipeline.db``."""
    path = tmp_path / "checkout" / "instance" / "pipeline.db"
    monkeypatch.setattr(config, "EMBEDDED_DB", str(path))
    return path


def test_the_demo_database_is_a_sensor_file_with_our_empty_table(tmp_path):
    path = tmp_path / "instance" / "pipeline.db"
    assert demo.ensure(path) is True
    assert sorted(p.name for p in path.parent.iterdir()) == ["pipeline.db"]  # no temp file left
    assert query(path, "SELECT count(*) FROM sensor_readings") == [(len(demo.READINGS),)]
    assert query(path, "SELECT sql FROM sqlite_master WHERE name = 'pipeline_config'") == [
        (SCHEMA.replace("IF NOT EXISTS ", ""),)
    ]
    assert query(path, "SELECT count(*) FROM pipeline_config") == [(0,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    with PipelineStore(path, create=True) as store:
        assert store.current().is_default and store.status()["table_exists"]


@pytest.mark.parametrize("existing", [b"", b"not a database", None], ids=["empty", "text", "link"])
def test_an_existing_path_is_never_replaced(tmp_path, existing):
    path = tmp_path / "pipeline.db"
    if existing is None:
        path.symlink_to(tmp_path / "dangling")
    else:
        path.write_bytes(existing)
    assert demo.ensure(path) is False
    if existing is None:
        assert path.is_symlink() and not (tmp_path / "dangling").exists()
    else:
        assert path.read_bytes() == existing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.db"]


def test_a_read_of_the_default_makes_it_and_later_reads_write_nothing(embedded):
    with PipelineStore.from_settings(config.load_settings({})) as store:
        assert store.db.create and store.path == str(embedded)
        assert embedded.exists()
        before = embedded.read_bytes()
        assert store.current().is_default
        assert store.history(limit=5) == []
    assert embedded.read_bytes() == before


def test_a_named_database_is_never_created_even_beside_the_demo(embedded):
    named = embedded.parent / "named.db"
    settings = config.load_settings({"PIPELINE_DB": str(named)})
    with (
        PipelineStore.from_settings(settings) as store,
        pytest.raises(DatabaseUnusable, match="not found"),
    ):
        store.current()
    assert not named.exists() and not embedded.exists()


def test_the_dashboard_makes_it_at_start_and_is_ready_at_once(embedded, monkeypatch):
    from webapp import create_app

    monkeypatch.delenv("PIPELINE_DB", raising=False)
    monkeypatch.delenv("PIPELINE_USERS_FILE", raising=False)
    app = create_app({"TESTING": True, "SECRET_KEY": "k"})
    assert embedded.exists()  # before any request: `flask ... user add` makes it
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["pipeline_config"] == "present"


@pytest.mark.slow
def test_processes_racing_to_make_it_leave_one_whole_file(tmp_path):
    path = tmp_path / "instance" / "pipeline.db"
    code = "import sys; from webapp.core import demo; print(demo.ensure(sys.argv[1]))"
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    made = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert sorted(made) == ["False", "False", "False", "True"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["pipeline.db"]
    assert query(path, "SELECT count(*) FROM sensor_readings") == [(len(demo.READINGS),)]
