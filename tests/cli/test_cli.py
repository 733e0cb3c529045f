"""The ``pipeline`` command group through both entrances: ``pipeline-manager`` (no Flask) and
``flask --app webapp pipeline``, in process (click's runners) and in real processes."""

import csv
import getpass
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from clilib import with_settings
from workers import ENTRANCES, clean_env, run_cli, start_cli

from webapp.cli import pipeline as cli_module
from webapp.core import export as export_module
from webapp.core import watch as watch_module
from webapp.core.store import PipelineStore

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RECORD_KEYS = {"id", "pipeline_type", "bucket", "updated_at", "updated_by", "metadata"}


def row_count(path):
    conn = sqlite3.connect(path)
    try:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'pipeline_config'"
        ).fetchall()
        if not tables[0][0]:
            return 0
        return conn.execute("SELECT count(*) FROM pipeline_config").fetchall()[0][0]
    finally:
        conn.close()


def assert_one_line_error(text, *fragments):
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_record(record, pipeline_type=None):
    assert set(record) >= RECORD_KEYS
    assert isinstance(record["metadata"], dict)
    if pipeline_type:
        assert record["pipeline_type"] == pipeline_type
    if record["id"] is not None:
        assert ISO_UTC.match(record["updated_at"]), record["updated_at"]
        moment = datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00"))
        assert moment.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# -- get -----------------------------------------------------------------------------------------


def test_get_on_a_never_set_database(cli, db_path):
    result = cli("get")
    assert result.exit_code == 0, result.output
    assert "pipeline: raw" in result.stdout
    assert "bucket:   ingestion" in result.stdout
    assert "never (default)" in result.stdout
    assert row_count(db_path) == 0

    result = cli("get", "--json")
    record = json.loads(result.stdout)
    assert record["id"] is None and record["default"] is True
    assert (record["pipeline_type"], record["bucket"]) == ("raw", "ingestion")
    assert record["updated_at"] is None and record["metadata"] == {}
    assert set(record) >= RECORD_KEYS


def test_get_after_a_set(cli):
    cli("set", "filtered", "--by", "operations", "--reason", "Enabling filtering")
    result = cli("get")
    assert result.exit_code == 0
    assert "pipeline: filtered" in result.stdout and "bucket:   enriched" in result.stdout
    assert "by operations" in result.stdout and "change #1" in result.stdout
    assert "reason:   Enabling filtering" in result.stdout

    record = json.loads(cli("get", "--json").stdout)
    assert_record(record, "filtered")
    assert record["id"] == 1 and record["default"] is False
    assert record["updated_by"] == "operations"
    assert record["metadata"]["reason"] == "Enabling filtering"
    assert record["metadata"]["source"] == "cli"


def test_bucket_overrides_reach_the_cli(cli, tmp_path, monkeypatch):
    cli = with_settings(cli, tmp_path, monkeypatch, PIPELINE_BUCKET_RAW="landing-zone")
    record = json.loads(cli("get", "--json").stdout)
    assert record["bucket"] == "landing-zone"


# -- set -----------------------------------------------------------------------------------------


def test_set_json_record(cli, db_path):
    result = cli("set", "aggregated", "--by", "ops", "--reason", "why", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert_record(record, "aggregated")
    assert record["changed"] is True
    assert (record["id"], record["bucket"], record["updated_by"]) == (1, "aggregated", "ops")
    assert record["metadata"] == {
        "reason": "why",
        "previous": None,
        "previous_id": None,
        "source": "cli",
    }
    record = json.loads(cli("set", "raw", "--by", "ops", "--reason", "back", "--json").stdout)
    assert record["changed"] is True and record["metadata"]["previous"] == "aggregated"
    assert row_count(db_path) == 2


def test_set_text_output_and_idempotent_no_op(cli, db_path):
    result = cli("set", "filtered", "--by", "ops", "--reason", "r")
    assert result.exit_code == 0, result.output
    assert "pipeline set to filtered (enriched)" in result.stdout
    assert "change #1" in result.stdout
    assert str(db_path) in result.stdout  # the file it wrote is named

    result = cli("set", "filtered", "--by", "ops", "--reason", "r")
    assert result.exit_code == 0
    assert "already filtered" in result.stdout and "nothing written" in result.stdout
    assert str(db_path) in result.stdout
    record = json.loads(cli("set", "filtered", "--reason", "r", "--json").stdout)
    assert record["changed"] is False and record["id"] == 1
    assert row_count(db_path) == 1


def test_by_defaults_to_the_os_user(cli):
    record = json.loads(cli("set", "schematized", "--reason", "r", "--json").stdout)
    assert record["updated_by"] == getpass.getuser()


def test_by_falls_back_to_the_uid_when_the_user_has_no_name(cli, monkeypatch):
    def no_name():
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", no_name)
    record = json.loads(cli("set", "schematized", "--reason", "r", "--json").stdout)
    assert re.fullmatch(r"uid-\d+", record["updated_by"])


def test_compare_and_set_conflict_exit_3(cli, db_path):
    assert (
        cli("set", "filtered", "--by", "alice", "--expect-id", "0", "--reason", "a").exit_code == 0
    )
    result = cli("set", "raw", "--by", "bob", "--expect-id", "0", "--reason", "b")
    assert result.exit_code == 3
    when = json.loads(cli("get", "--json").stdout)["updated_at"]
    assert_one_line_error(result.stderr, "filtered", "alice", when, "nothing was written")
    assert result.stdout == ""
    assert row_count(db_path) == 1
    result = cli("set", "raw", "--by", "bob", "--expect-id", "1", "--reason", "b", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["id"] == 2


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["set", "bogus", "--reason", "r"], "invalid pipeline type 'bogus'"),
        (["set", "RAW", "--reason", "r"], "raw, schematized, filtered, aggregated"),
        (["set", "raw", "--by", " ", "--reason", "r"], "operator name is required"),
        (["set", "raw", "--reason", "x" * 2001], "too long"),
        (["set", "raw"], "reason is required"),
        (["set", "raw", "--reason", "  "], "reason is required"),
        (["set", "raw", "--reason", "two\nlines"], "U+000A"),
        (["set", "raw", "--reason", "\x1b[2Jcleared"], "U+001B"),
        (["set", "raw", "--reason", "abc\u202edcba"], "U+202E"),
        (["set", "raw", "--by", "tab\there", "--reason", "r"], "operator name"),
    ],
)
def test_invalid_input_exit_2_writes_nothing(cli, db_path, args, fragment):
    before = db_path.read_bytes()
    result = cli(*args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, fragment)
    assert db_path.read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ["set"],
        ["set", "raw", "--expect-id", "-1"],
        ["set", "raw", "--expect-id", "one"],
        ["history", "--limit", "0"],
        ["history", "--format", "xml"],
        ["monitor", "--interval", "0"],
        ["monitor", "--count", "0"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2(cli, db_path, args):
    before = db_path.read_bytes()
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--help" in lines[0], lines
    assert db_path.read_bytes() == before


@pytest.mark.parametrize("where", ["before", "after"])
def test_empty_db_path_is_refused_not_replaced_by_the_default(cli, where):
    args = ["--db", "", "get"] if where == "before" else ["get", "--db", ""]
    result = cli(*args)
    assert result.exit_code == 2
    assert "empty path" in result.output


def test_reason_can_be_made_optional_for_every_path(cli, tmp_path, monkeypatch, db_path):
    relaxed = with_settings(cli, tmp_path, monkeypatch, PIPELINE_REQUIRE_REASON="0")
    result = relaxed("set", "filtered", "--by", "ops")
    assert result.exit_code == 0, result.output
    assert row_count(db_path) == 1


def test_busy_past_the_budget_exit_4_writes_nothing(cli, db_path, tmp_path, monkeypatch):
    cli = with_settings(cli, tmp_path, monkeypatch, PIPELINE_WRITE_TIMEOUT="0.2")
    holder = sqlite3.connect(db_path, isolation_level=None)  # another connection holds the lock
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = cli("set", "filtered", "--by", "ops", "--reason", "r")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 4
    assert_one_line_error(
        result.stderr, "another process held the write lock", "0.2 s", "retrying is safe"
    )
    assert result.stdout == ""
    assert row_count(db_path) == 0


# -- history -------------------------------------------------------------------------------------


@pytest.fixture
def three_changes(cli):
    for pipeline_type, by, reason in [
        ("filtered", "alice", "one"),
        ("aggregated", "bob", "two, with a comma"),
        ("schematized", "carol", 'three "quoted"'),
    ]:
        assert cli("set", pipeline_type, "--by", by, "--reason", reason).exit_code == 0
    return cli


def test_history_table(three_changes, db_path):
    result = three_changes("history")
    assert result.exit_code == 0
    header, *lines = result.stdout.strip().splitlines()
    assert header == f"database: {db_path}"
    assert len(lines) == 3
    assert "#3" in lines[0] and "aggregated → schematized (validated)" in lines[0]
    assert "by carol via cli" in lines[0] and 'three "quoted"' in lines[0]
    assert "#1" in lines[2] and "(default) → filtered" in lines[2]
    assert [line.split()[0] for line in lines] == sorted(
        (line.split()[0] for line in lines), reverse=True
    )
    limited = three_changes("history", "--limit", "2").stdout.strip().splitlines()
    assert limited == [header, *lines[:2]]


def test_history_json(three_changes):
    result = three_changes("history", "--format", "json")
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [3, 2, 1]
    for record in records:
        assert_record(record)
        assert "changed" not in record
    assert records[1]["metadata"]["previous"] == "filtered"
    assert three_changes("history", "--json").stdout == result.stdout
    assert json.loads(three_changes("history", "--json", "--limit", "1").stdout)[0]["id"] == 3


def test_history_csv(three_changes):
    result = three_changes("history", "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(export_module.CSV_FIELDS)
    assert [row["id"] for row in rows] == ["3", "2", "1"]
    assert rows[1]["reason"] == "two, with a comma"
    assert rows[0]["reason"] == 'three "quoted"'
    assert rows[0]["previous"] == "aggregated" and rows[2]["previous"] == ""
    assert rows[0]["source"] == "cli" and rows[0]["bucket"] == "validated"
    assert ISO_UTC.match(rows[0]["updated_at"])
    assert json.loads(rows[0]["metadata"])["reason"] == 'three "quoted"'


def test_history_when_nothing_was_set(cli, db_path):
    result = cli("history")
    assert result.exit_code == 0 and "no changes yet" in result.stdout
    assert f"database: {db_path}" in result.stdout
    assert json.loads(cli("history", "--json").stdout) == []
    assert cli("history", "--format", "csv").stdout.strip() == ",".join(export_module.CSV_FIELDS)
    assert row_count(db_path) == 0


# -- monitor (in process) ------------------------------------------------------------------------


def test_monitor_prints_current_then_each_change(cli, db_path):
    stop = threading.Event()
    errors = []

    def keep_changing():
        # Changes from another connection until the monitor has seen two of them.
        types = ["filtered", "aggregated"]
        try:
            with PipelineStore(db_path) as store:
                i = 0
                while not stop.wait(0.02):
                    store.set(types[i % 2], updated_by="thread", reason=f"r{i}")
                    i += 1
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    changer = threading.Thread(target=keep_changing)
    changer.start()
    try:
        result = cli("monitor", "--interval", "0.05", "--count", "2")
    finally:
        stop.set()
        changer.join()
    assert not errors
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.strip().splitlines()
    assert header == f"database: {db_path}"
    assert len(lines) == 3
    assert lines[0].startswith("current: ")
    assert "#1" in lines[1] and "(default) → filtered (enriched)  by thread via cli: r0" in lines[1]
    assert "#2" in lines[2] and "filtered → aggregated" in lines[2]


def test_monitor_json(cli, db_path, monkeypatch):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops")
    calls = []

    def sleep(seconds):  # another connection changes the pipeline during the first wait
        calls.append(seconds)
        if len(calls) == 1:
            with PipelineStore(db_path) as store:
                store.set("aggregated", updated_by="ops", reason="go")

    monkeypatch.setattr(watch_module.time, "sleep", sleep)
    result = cli("monitor", "--json", "--count", "1", "--interval", "0.5")
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.strip().splitlines())
    assert result.stderr == ""
    assert_record(first, "filtered")
    assert_record(second, "aggregated")
    assert second["metadata"]["previous"] == "filtered" and second["metadata"]["reason"] == "go"
    assert calls == [0.5]


def test_monitor_ignores_commits_to_other_tables(cli, db_path, monkeypatch):
    ticks = []

    def sleep(seconds):
        ticks.append(seconds)
        conn = sqlite3.connect(db_path)
        with conn:  # the sensor writer commits: data_version moves, no pipeline change
            conn.execute(
                "INSERT INTO sensor_readings (sensor_id, value, recorded_at) VALUES ('s', 1, 'x')"
            )
        conn.close()
        if len(ticks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(watch_module.time, "sleep", sleep)
    result = cli("monitor", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == [
        f"database: {db_path}",
        "current: raw (ingestion) (default)",
    ]
    assert len(ticks) == 3


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_set_writes_one_audit_line_on_stderr_and_none_for_a_no_op(db_path, entrance):
    args = ["--db", str(db_path), "set", "filtered", "--by", "ops", "--reason", "audit me"]
    first = run_cli(*args, entrance=entrance)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["event"] == "pipeline_change"
    assert (record["who"], record["from"], record["to"]) == ("ops", None, "filtered")
    assert (record["reason"], record["source"]) == ("audit me", "cli")
    again = run_cli(*args, entrance=entrance)
    assert again.returncode == 0 and again.stderr == ""  # nothing changed, nothing to audit


def test_monitor_ctrl_c_exits_0_quietly(cli, monkeypatch, db_path):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(watch_module.time, "sleep", interrupt)
    result = cli("monitor")
    assert result.exit_code == 0
    assert result.stdout == f"database: {db_path}\ncurrent: raw (ingestion) (default)\n"
    assert result.stderr == ""


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["get"], ["set"], ["history"], ["monitor"]])
def test_every_command_has_help_with_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "pipeline-manager --db " in result.stdout


# -- database choice -----------------------------------------------------------------------------


def test_db_option_before_or_after_the_command_and_environment(cli, tmp_path, monkeypatch):
    from conftest import make_sensor_db

    other = make_sensor_db(tmp_path / "other.db")
    assert cli("--db", other, "set", "filtered", "--by", "ops", "--reason", "r").exit_code == 0
    assert row_count(other) == 1
    result = cli("get", "--db", other, "--json")  # as operators type it
    assert json.loads(result.stdout)["pipeline_type"] == "filtered"
    assert cli("set", "raw", "--db", other, "--reason", "r").exit_code == 0
    assert row_count(other) == 2
    from_env = with_settings(cli, tmp_path, monkeypatch, PIPELINE_DB=other)
    assert json.loads(from_env("get", "--json").stdout)["pipeline_type"] == "raw"
    # --db wins over PIPELINE_DB; after the command over before it.
    third = make_sensor_db(tmp_path / "third.db")
    assert json.loads(cli("--db", third, "get", "--json").stdout)["default"] is True
    result = cli("--db", other, "get", "--db", third, "--json")
    assert json.loads(result.stdout)["default"] is True


def test_a_write_without_a_named_database_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_DB", raising=False)
    from webapp import create_app
    from webapp.core.config import EMBEDDED_DB

    if cli.name == "flask":
        app = create_app({"TESTING": True, "DB": None, "SECRET_KEY": "x"})
        result = app.test_cli_runner().invoke(args=["pipeline", "set", "filtered", "--reason", "r"])
    else:
        result = CliRunner().invoke(cli_module.main, ["set", "filtered", "--reason", "r"], env={})
    embedded = Path(EMBEDDED_DB)
    before = embedded.read_bytes() if embedded.exists() else None
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "no database named", "--db", str(EMBEDDED_DB))
    assert (embedded.read_bytes() if embedded.exists() else None) == before


def test_usage_error_hints_name_a_command_that_works(cli):
    result = cli("history", "--limit", "0")
    hint = re.search(r"\(see: (.*) --help\)", result.stderr)[1]
    assert hint == (
        "flask --app webapp pipeline history" if cli.name == "flask" else f"{cli.name} history"
    )


# -- real processes ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_real_process_get_and_set(db_path, entrance):
    env = clean_env(PIPELINE_DB=db_path)
    args = ("set", "filtered", "--by", "ops", "--reason", "real", "--json")
    result = run_cli(*args, env=env, entrance=entrance)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert_record(record, "filtered")
    assert record["changed"] is True
    result = run_cli("--db", db_path, "get", "--json", entrance=entrance)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == record["id"]
    result = run_cli("--db", db_path, "history", "--format", "csv", entrance=entrance)
    assert result.returncode == 0 and result.stdout.count("\n") == 2


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_real_process_errors_are_one_line_with_their_exit_code(db_path, tmp_path, entrance):
    def run(*args):
        return run_cli(*args, entrance=entrance)

    result = run("--db", tmp_path / "missing.db", "get")
    assert result.returncode == 5
    assert_one_line_error(result.stderr, "not found")
    result = run("--db", db_path, "set", "bogus", "--reason", "r")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "invalid pipeline type")
    run("--db", db_path, "set", "raw", "--by", "ops", "--reason", "r")
    result = run("--db", db_path, "set", "filtered", "--expect-id", "7", "--reason", "r")
    assert result.returncode == 3
    assert_one_line_error(result.stderr, "it is now raw", "set by ops")
    assert row_count(db_path) == 1


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_monitor_in_a_process_sees_a_change_made_by_another(db_path, entrance):
    args = ("--db", db_path, "monitor", "--count", "1", "--interval", "0.05")
    monitor = start_cli(*args, entrance=entrance)
    try:
        assert monitor.stdout.readline().startswith("database: ")
        first = monitor.stdout.readline()  # the monitor is watching once it printed this
        assert first.startswith("current: raw (ingestion) (default)"), monitor.stderr.read()
        change = run_cli("--db", db_path, "set", "aggregated", "--by", "other", "--reason", "now")
        assert change.returncode == 0, change.stderr
        out, err = monitor.communicate(timeout=30)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
    assert monitor.returncode == 0, err
    assert "(default) → aggregated (aggregated)  by other via cli: now" in out
    assert "#1" in out
    assert err == ""


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_monitor_in_a_process_ends_quietly_on_sigint(db_path, entrance):
    monitor = start_cli("--db", db_path, "monitor", "--interval", "0.05", entrance=entrance)
    try:
        assert monitor.stdout.readline().startswith("database: ")
        assert monitor.stdout.readline().startswith("current: ")
        monitor.send_signal(signal.SIGINT)
        out, err = monitor.communicate(timeout=30)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
    assert monitor.returncode == 0
    assert out == "" and err == ""


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_an_argument_that_is_not_utf8_is_one_error_line(db_path, entrance):
    """A reason typed in a Latin-1 terminal arrives as bytes that are not UTF-8."""
    from workers import ROOT, cli_command

    base = cli_command("--db", db_path, "set", "raw", entrance=entrance)
    for extra in ([b"--reason", b"caf\xe9"], [b"--by", b"op\xff", b"--reason", b"r"]):
        result = subprocess.run(
            [*map(os.fsencode, base), *extra], cwd=ROOT, env=clean_env(), capture_output=True
        )
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, stderr
        assert_one_line_error(stderr, "not valid Unicode")
    assert row_count(db_path) == 0


def test_monitor_follows_a_backup_restored_under_it(cli, db_path, tmp_path, monkeypatch):
    from conftest import checkpoint, database_with

    with PipelineStore(db_path) as store:
        for pipeline_type in ("filtered", "aggregated", "raw"):
            store.set(pipeline_type, updated_by="ops", reason="live")
    backup = database_with(tmp_path / "backup.db", "schematized")
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 1:
            checkpoint(db_path)
            backup.replace(db_path)  # an operator restores a backup
        elif len(calls) == 2:
            db_path.write_bytes(b"")  # then the disk fills and truncates it
        elif len(calls) == 3:
            restored = database_with(tmp_path / "again.db", "schematized", "filtered")
            restored.replace(db_path)

    monkeypatch.setattr(watch_module.time, "sleep", sleep)
    result = cli("monitor", "--count", "1", "--interval", "0.05")
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 3, warnings
    assert "was replaced: its newest change is #1, older than #3" in warnings[0]
    assert "not an SQLite database" in warnings[1] and "still watching" in warnings[1]
    assert warnings[2].startswith("Warning: database usable again")
    assert "#2" in result.stdout.splitlines()[-1]  # the restored file's new change
