"""Bad databases are refused with one clear line (exit 5), and nothing is created or altered.

Permission cases must run as an unprivileged user: root ignores file modes. Under root they run
the real CLI in a subprocess as ``nobody`` (65534), on a file owned by root, in a folder of our own
(pytest's tmp_path parents are 0700, which ``nobody`` cannot enter).
"""

import os
import random
import re
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest
from clilib import with_settings
from conftest import make_sensor_db
from workers import clean_env, flask_command, run_cli, snapshot, unprivileged_python

from webapp.core.errors import DatabaseUnusable
from webapp.core.store import PipelineStore

NOBODY = 65534

OLDER_TOOL_SCHEMA = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "pipeline_type TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
    "created_by TEXT, is_active BOOLEAN DEFAULT 1)"
)


def older_tool_db(path, wal=False):
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(OLDER_TOOL_SCHEMA)
    conn.execute(
        "INSERT INTO pipeline_config (pipeline_type, created_by, is_active) VALUES ('raw', 'x', 1)"
    )
    conn.commit()
    conn.close()
    return path


def write_bytes(path, data):
    path.write_bytes(data)
    return path


# name -> (make the bad path inside a folder, fragment of the message)
BAD = {
    "missing": (lambda d: d / "sensor_data.db", "database not found"),
    "missing-folder": (lambda d: d / "no-such-dir" / "sensor_data.db", "database not found"),
    "directory": (lambda d: (d / "data.db").mkdir() or d / "data.db", "is a directory"),
    "text": (
        lambda d: write_bytes(d / "notes.db", b"sensor_id,value\ns-1,21.5\n"),
        "not an SQLite database",
    ),
    "random-bytes": (
        lambda d: write_bytes(d / "blob.db", random.Random(7).randbytes(8192)),
        "not an SQLite database",
    ),
    "sqlite-header-then-garbage": (
        lambda d: write_bytes(
            d / "broken.db", b"SQLite format 3\x00" + random.Random(8).randbytes(8176)
        ),
        "not an SQLite database",
    ),
    "empty-file": (lambda d: write_bytes(d / "truncated.db", b""), "not an SQLite database"),
    "older-tool-table": (
        lambda d: older_tool_db(d / "old.db"),
        "has another tool's columns (id, pipeline_type, created_at, created_by, is_active)",
    ),
    "older-tool-table-wal": (
        lambda d: older_tool_db(d / "old-wal.db", wal=True),
        "has another tool's columns",
    ),
}

COMMANDS = [
    ["get"],
    ["get", "--json"],
    ["set", "filtered", "--by", "ops", "--reason", "r"],
    ["history"],
    ["history", "--format", "csv"],
    ["monitor", "--count", "1"],
]


def assert_refused(exit_code, stderr, stdout, fragment):
    assert exit_code == 5, (exit_code, stdout, stderr)
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]
    assert stdout == ""


@pytest.fixture(params=sorted(BAD))
def bad(request, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    make, fragment = BAD[request.param]
    path = make(folder)
    return folder, path, fragment


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_cli_refuses_with_db_option(cli, bad, command):
    folder, path, fragment = bad
    before = snapshot(folder)
    result = cli("--db", path, *command)
    assert_refused(result.exit_code, result.stderr, result.stdout, fragment)
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "command", [["get"], ["set", "aggregated", "--reason", "r"]], ids=["get", "set"]
)
def test_cli_refuses_with_pipeline_db(cli, bad, command, tmp_path, monkeypatch):
    folder, path, fragment = bad
    before = snapshot(folder)
    cli = with_settings(cli, tmp_path, monkeypatch, PIPELINE_DB=path)
    result = cli(*command)
    assert_refused(result.exit_code, result.stderr, result.stdout, fragment)
    assert snapshot(folder) == before


def test_store_refuses_and_touches_nothing(bad):
    folder, path, fragment = bad
    before = snapshot(folder)
    with PipelineStore(path) as store:
        calls = (store.current, store.history, lambda: store.set("raw", updated_by="ops"))
        for call in calls:
            with pytest.raises(DatabaseUnusable, match=re.escape(fragment)):
                call()
    assert snapshot(folder) == before


def test_real_process_refuses_a_missing_pipeline_db(tmp_path):
    before = snapshot(tmp_path)
    for args in (["get"], ["set", "filtered", "--reason", "r"]):
        result = run_cli(*args, env=clean_env(PIPELINE_DB=tmp_path / "sensor_data.db"))
        assert_refused(result.returncode, result.stderr, result.stdout, "database not found")
    assert snapshot(tmp_path) == before


def test_older_tool_table_is_not_altered_nor_switched_to_wal(cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    path = older_tool_db(folder / "old.db")
    before_bytes = path.read_bytes()
    for command in COMMANDS:
        result = cli("--db", path, *command)
        assert result.exit_code == 5
    assert path.read_bytes() == before_bytes
    assert before_bytes[18:20] == b"\x01\x01"  # still a rollback-journal file, not WAL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
    table_sql = "SELECT sql FROM sqlite_master WHERE name = 'pipeline_config'"
    assert conn.execute(table_sql).fetchall() == [(OLDER_TOOL_SCHEMA,)]
    assert conn.execute("SELECT pipeline_type, created_by FROM pipeline_config").fetchall() == [
        ("raw", "x")
    ]
    conn.close()
    assert sorted(p.name for p in folder.iterdir()) == ["old.db"]


def test_invalid_type_writes_no_row(cli, db_path):
    assert cli("set", "filtered", "--by", "ops", "--reason", "r").exit_code == 0
    before = snapshot(db_path.parent)
    for bad_type in ("bogus", "FILTERED", "", "raw;drop"):
        result = cli("set", bad_type, "--by", "ops", "--reason", "r")
        assert result.exit_code == 2
        assert result.stderr.startswith("Error: invalid pipeline type")
        assert "Traceback" not in result.output
    assert snapshot(db_path.parent) == before


# -- permissions: a real process as an unprivileged user ---------------------------------------


@pytest.fixture(scope="module")
def as_user():
    """Return ``run(folder, *args) -> CompletedProcess`` running the CLI without privileges."""
    if os.geteuid() != 0:
        # Not root: the test process itself is unprivileged, file modes apply to it.
        def run(*args, env=None):
            return run_cli(*args, env=env)

        return run
    python, env_or_reason = unprivileged_python(NOBODY, NOBODY)
    if python is None:
        pytest.fail(f"running as root but no interpreter usable by uid {NOBODY}: {env_or_reason}")
    base_env = env_or_reason

    def run(*args, env=None):
        import subprocess

        from workers import ROOT

        return subprocess.run(
            flask_command(*args, python=python),
            cwd=ROOT,
            env={**base_env, **(env or {})},
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def shared_dir():
    """A folder other users can enter (and, with the sticky bit, create files in)."""
    folder = Path(tempfile.mkdtemp(prefix="pipeline-perm-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def permission_case(folder, file_mode, folder_mode, owner_nobody=False):
    path = make_sensor_db(folder / "sensor_data.db")
    if owner_nobody and os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    os.chmod(path, file_mode)
    os.chmod(folder, folder_mode)
    if os.geteuid() != 0 and os.access(path, os.R_OK if file_mode == 0 else os.W_OK):
        pytest.skip("file modes do not apply to this user (cannot set up the permission case)")
    return path


@pytest.mark.parametrize(
    "file_mode, folder_mode, owner_nobody, fragment",
    [
        (0o000, 0o1777, False, "database is not readable"),
        (0o444, 0o1777, False, "database is not writable"),
        (0o644, 0o755, True, "database folder is not writable"),
    ],
    ids=["unreadable-file", "unwritable-file", "unwritable-folder"],
)
@pytest.mark.parametrize(
    "command", [["get"], ["set", "filtered", "--by", "ops", "--reason", "r"], ["history"]]
)
def test_permission_problems_are_refused(
    as_user, shared_dir, file_mode, folder_mode, owner_nobody, fragment, command
):
    path = permission_case(shared_dir, file_mode, folder_mode, owner_nobody)
    before = snapshot(shared_dir)
    result = as_user("--db", path, *command)
    assert_refused(result.returncode, result.stderr, result.stdout, fragment)
    assert snapshot(shared_dir) == before
    assert stat.S_IMODE(path.stat().st_mode) == file_mode
    # The same through PIPELINE_DB.
    result = as_user(*command, env={"PIPELINE_DB": str(path)})
    assert_refused(result.returncode, result.stderr, result.stdout, fragment)
    assert snapshot(shared_dir) == before
