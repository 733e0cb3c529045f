"""The ``flask pipeline`` CLI: through ``app.test_cli_runner()``, and through real processes."""

import csv
import getpass
import io
import json
import re
import signal
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from workers import clean_env, run_cli, start_cli

from webapp import cli as cli_module
from webapp import export as export_module
from webapp.store import PipelineStore

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
RECORD_KEYS = {"id", "pipeline_type", "bucket", "updated_at", "updated_by", "metadata"}


def invoke(runner, *args, **kwargs):
    return runner.invoke(args=["pipeline", *map(str, args)], **kwargs)


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


def test_get_on_a_never_set_database(runner, db_path):
    result = invoke(runner, "get")
    assert result.exit_code == 0, result.output
    assert "pipeline: raw" in result.stdout
    assert "bucket:   ingestion" in result.stdout
    assert "never (default)" in result.stdout
    assert row_count(db_path) == 0

    result = invoke(runner, "get", "--json")
    record = json.loads(result.stdout)
    assert record["id"] is None and record["default"] is True
    assert (record["pipeline_type"], record["bucket"]) == ("raw", "ingestion")
    assert record["updated_at"] is None and record["metadata"] == {}
    assert set(record) >= RECORD_KEYS


def test_get_after_a_set(runner):
    invoke(runner, "set", "filtered", "--by", "operations", "--reason", "Enabling filtering")
    result = invoke(runner, "get")
    assert result.exit_code == 0
    assert "pipeline: filtered" in result.stdout and "bucket:   enriched" in result.stdout
    assert "by operations" in result.stdout and "change #1" in result.stdout
    assert "reason:   Enabling filtering" in result.stdout

    record = json.loads(invoke(runner, "get", "--json").stdout)
    assert_record(record, "filtered")
    assert record["id"] == 1 and record["default"] is False
    assert record["updated_by"] == "operations"
    assert record["metadata"]["reason"] == "Enabling filtering"
    assert record["metadata"]["source"] == "cli"


def test_bucket_overrides_reach_the_cli(db_path, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("PIPELINE_BUCKET_RAW", "landing-zone")
    app = create_app({"TESTING": True, "DB": str(db_path), "SECRET_KEY": "x"})
    record = json.loads(invoke(app.test_cli_runner(), "get", "--json").stdout)
    assert record["bucket"] == "landing-zone"


# -- set -----------------------------------------------------------------------------------------


def test_set_json_record(runner, db_path):
    result = invoke(runner, "set", "aggregated", "--by", "ops", "--reason", "why", "--json")
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
    record = json.loads(invoke(runner, "set", "raw", "--by", "ops", "--json").stdout)
    assert record["changed"] is True and record["metadata"]["previous"] == "aggregated"
    assert row_count(db_path) == 2


def test_set_text_output_and_idempotent_no_op(runner, db_path):
    result = invoke(runner, "set", "filtered", "--by", "ops")
    assert result.exit_code == 0
    assert "pipeline set to filtered (enriched)" in result.stdout
    assert "change #1" in result.stdout

    result = invoke(runner, "set", "filtered", "--by", "ops")
    assert result.exit_code == 0
    assert "already filtered" in result.stdout and "nothing written" in result.stdout
    record = json.loads(invoke(runner, "set", "filtered", "--json").stdout)
    assert record["changed"] is False and record["id"] == 1
    assert row_count(db_path) == 1


def test_by_defaults_to_the_os_user(runner):
    record = json.loads(invoke(runner, "set", "schematized", "--json").stdout)
    assert record["updated_by"] == getpass.getuser()


def test_by_falls_back_to_the_uid_when_the_user_has_no_name(runner, monkeypatch):
    def no_name():
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(cli_module.getpass, "getuser", no_name)
    record = json.loads(invoke(runner, "set", "schematized", "--json").stdout)
    assert re.fullmatch(r"uid-\d+", record["updated_by"])


def test_compare_and_set_conflict_exit_3(runner, db_path):
    assert invoke(runner, "set", "filtered", "--by", "alice", "--expect-id", "0").exit_code == 0
    result = invoke(runner, "set", "raw", "--by", "bob", "--expect-id", "0")
    assert result.exit_code == 3
    when = json.loads(invoke(runner, "get", "--json").stdout)["updated_at"]
    assert_one_line_error(result.stderr, "filtered", "alice", when, "nothing was written")
    assert result.stdout == ""
    assert row_count(db_path) == 1
    result = invoke(runner, "set", "raw", "--by", "bob", "--expect-id", "1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["id"] == 2


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["set", "bogus"], "invalid pipeline type 'bogus'"),
        (["set", "RAW"], "raw, schematized, filtered, aggregated"),
        (["set", "raw", "--by", " "], "operator name is required"),
        (["set", "raw", "--reason", "x" * 2001], "too long"),
    ],
)
def test_invalid_input_exit_2_writes_nothing(runner, db_path, args, fragment):
    before = db_path.read_bytes()
    result = invoke(runner, *args)
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
def test_usage_errors_exit_2(runner, db_path, args):
    before = db_path.read_bytes()
    result = invoke(runner, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--help" in lines[0], lines
    assert db_path.read_bytes() == before


def test_empty_db_path_is_refused_not_replaced_by_the_default(app):
    result = app.test_cli_runner().invoke(args=["pipeline", "--db", "", "get"])
    assert result.exit_code == 2
    assert "empty path" in result.output


def test_busy_past_the_budget_exit_4_writes_nothing(db_path):
    from webapp import create_app

    app = create_app({"TESTING": True, "DB": str(db_path), "SECRET_KEY": "x", "WRITE_TIMEOUT": 0.2})
    holder = sqlite3.connect(db_path, isolation_level=None)  # another connection holds the lock
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = invoke(app.test_cli_runner(), "set", "filtered", "--by", "ops")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 4
    assert_one_line_error(result.stderr, "another process held the write lock", "0.2 s")
    assert result.stdout == ""
    assert row_count(db_path) == 0


# -- history -------------------------------------------------------------------------------------


@pytest.fixture
def three_changes(runner):
    for pipeline_type, by, reason in [
        ("filtered", "alice", "one"),
        ("aggregated", "bob", "two, with a comma"),
        ("schematized", "carol", 'three "quoted"'),
    ]:
        assert invoke(runner, "set", pipeline_type, "--by", by, "--reason", reason).exit_code == 0
    return runner


def test_history_table(three_changes):
    result = invoke(three_changes, "history")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert "#3" in lines[0] and "aggregated → schematized (validated)" in lines[0]
    assert "by carol via cli" in lines[0] and 'three "quoted"' in lines[0]
    assert "#1" in lines[2] and "(default) → filtered" in lines[2]
    assert [line.split()[0] for line in lines] == sorted(
        (line.split()[0] for line in lines), reverse=True
    )
    limited = invoke(three_changes, "history", "--limit", "2").stdout.strip().splitlines()
    assert limited == lines[:2]


def test_history_json(three_changes):
    result = invoke(three_changes, "history", "--format", "json")
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [3, 2, 1]
    for record in records:
        assert_record(record)
        assert "changed" not in record
    assert records[1]["metadata"]["previous"] == "filtered"
    assert invoke(three_changes, "history", "--json").stdout == result.stdout
    assert (
        json.loads(invoke(three_changes, "history", "--json", "--limit", "1").stdout)[0]["id"] == 3
    )


def test_history_csv(three_changes):
    result = invoke(three_changes, "history", "--format", "csv")
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


def test_history_when_nothing_was_set(runner, db_path):
    result = invoke(runner, "history")
    assert result.exit_code == 0 and "no changes yet" in result.stdout
    assert json.loads(invoke(runner, "history", "--json").stdout) == []
    assert invoke(runner, "history", "--format", "csv").stdout.strip() == ",".join(
        export_module.CSV_FIELDS
    )
    assert row_count(db_path) == 0


# -- monitor (in process) ------------------------------------------------------------------------


def test_monitor_prints_current_then_each_change(runner, db_path):
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
        result = invoke(runner, "monitor", "--interval", "0.05", "--count", "2")
    finally:
        stop.set()
        changer.join()
    assert not errors
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("current: ")
    assert "#1" in lines[1] and "(default) → filtered (enriched)  by thread via cli: r0" in lines[1]
    assert "#2" in lines[2] and "filtered → aggregated" in lines[2]


def test_monitor_json(runner, db_path, monkeypatch):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops")
    calls = []

    def sleep(seconds):  # another connection changes the pipeline during the first wait
        calls.append(seconds)
        if len(calls) == 1:
            with PipelineStore(db_path) as store:
                store.set("aggregated", updated_by="ops", reason="go")

    monkeypatch.setattr(cli_module.time, "sleep", sleep)
    result = invoke(runner, "monitor", "--json", "--count", "1", "--interval", "0.5")
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.strip().splitlines())
    assert_record(first, "filtered")
    assert_record(second, "aggregated")
    assert second["metadata"]["previous"] == "filtered" and second["metadata"]["reason"] == "go"
    assert calls == [0.5]


def test_monitor_ignores_commits_to_other_tables(runner, db_path, monkeypatch):
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

    monkeypatch.setattr(cli_module.time, "sleep", sleep)
    result = invoke(runner, "monitor", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == ["current: raw (ingestion) (default)"]
    assert len(ticks) == 3


def test_set_writes_one_audit_line_on_stderr_and_none_for_a_no_op(db_path):
    args = ["--db", str(db_path), "set", "filtered", "--by", "ops", "--reason", "audit me"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["event"] == "pipeline_change"
    assert (record["who"], record["from"], record["to"]) == ("ops", None, "filtered")
    assert (record["reason"], record["source"]) == ("audit me", "cli")
    again = run_cli(*args)
    assert again.returncode == 0 and again.stderr == ""  # nothing changed, nothing to audit


def test_monitor_ctrl_c_exits_0_quietly(runner, monkeypatch):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.time, "sleep", interrupt)
    result = invoke(runner, "monitor")
    assert result.exit_code == 0
    assert result.stdout == "current: raw (ingestion) (default)\n"
    assert result.stderr == ""


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["get"], ["set"], ["history"], ["monitor"]])
def test_every_command_has_help_with_an_example(runner, command):
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "flask --app webapp pipeline" in result.stdout


# -- database choice -----------------------------------------------------------------------------


def test_db_option_and_environment_variable(runner, tmp_path):
    from conftest import make_sensor_db

    other = make_sensor_db(tmp_path / "other.db")
    assert invoke(runner, "--db", other, "set", "filtered", "--by", "ops").exit_code == 0
    assert row_count(other) == 1
    result = invoke(runner, "get", "--json", env={"PIPELINE_DB": str(other)})
    assert json.loads(result.stdout)["pipeline_type"] == "filtered"
    # --db wins over PIPELINE_DB.
    third = make_sensor_db(tmp_path / "third.db")
    result = invoke(runner, "--db", third, "get", "--json", env={"PIPELINE_DB": str(other)})
    assert json.loads(result.stdout)["default"] is True


# -- real processes ------------------------------------------------------------------------------


def test_real_process_get_and_set(db_path):
    env = clean_env(PIPELINE_DB=db_path)
    result = run_cli("set", "filtered", "--by", "ops", "--reason", "real", "--json", env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert_record(record, "filtered")
    assert record["changed"] is True
    result = run_cli("--db", db_path, "get", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == record["id"]
    result = run_cli("--db", db_path, "history", "--format", "csv")
    assert result.returncode == 0 and result.stdout.count("\n") == 2


def test_real_process_errors_are_one_line_with_their_exit_code(db_path, tmp_path):
    result = run_cli("--db", tmp_path / "missing.db", "get")
    assert result.returncode == 5
    assert_one_line_error(result.stderr, "not found")
    result = run_cli("--db", db_path, "set", "bogus")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "invalid pipeline type")
    run_cli("--db", db_path, "set", "raw", "--by", "ops")
    result = run_cli("--db", db_path, "set", "filtered", "--expect-id", "7")
    assert result.returncode == 3
    assert_one_line_error(result.stderr, "it is now raw", "set by ops")
    assert row_count(db_path) == 1


def test_monitor_in_a_process_sees_a_change_made_by_another(db_path):
    monitor = start_cli("--db", db_path, "monitor", "--count", "1", "--interval", "0.05")
    try:
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


def test_monitor_in_a_process_ends_quietly_on_sigint(db_path):
    monitor = start_cli("--db", db_path, "monitor", "--interval", "0.05")
    try:
        assert monitor.stdout.readline().startswith("current: ")
        monitor.send_signal(signal.SIGINT)
        out, err = monitor.communicate(timeout=30)
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
    assert monitor.returncode == 0
    assert out == "" and err == ""
