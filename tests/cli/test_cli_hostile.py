"""Hostile values for every option and argument of every ``pipeline`` and ``user`` command
(issue 15.9, 15.10): always one ``Error:`` line and a documented exit code, never a traceback.

The options are read from the click groups themselves, so a new option is covered at once.
"""

import json
import os
import sqlite3
import stat
import sys

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rowlib import insert_row

from webapp.cli.pipeline import pipeline_cli
from webapp.cli.user import user_cli
from webapp.core.store import PipelineStore

LOOSE_TABLE = (
    "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT, "
    "updated_at TIMESTAMP, updated_by TEXT, metadata TEXT)"
)

DOCUMENTED = {0, 2, 3, 4, 5}  # README: Exit codes (1 is "unexpected internal error")
HOSTILE = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e400",
    "9223372036854775808",
    "18446744073709551616",
    "9" * 400,
    "١٧",
    "１７",
    "²",
    "1_0",
    "0x10",
    "+3",
    "\x00",
    "\x1b[2J",
    "a\nb",
    "\udce9",  # what a Latin-1 byte in argv becomes
    "http://[::1",
    "https://user:secret@[::1",
    "%FF",
    "-",
    ".",
    "/",
    # (no device paths: as root, a regression would replace the device; see the FIFO tests)
    "\u202eevil",
]
hostile_values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))


@pytest.fixture(autouse=True)
def nothing_created_in_the_working_directory():
    """No hostile value may make a file where the command runs (the checkout, here)."""
    before = set(os.listdir())
    yield
    assert set(os.listdir()) == before


def options_of(group):
    """Return (command, option flag) for every option that takes a value, and each argument."""
    found = []
    for name, command in sorted(group.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                found.append((name, param.opts[-1]))
            elif isinstance(param, click.Argument):
                found.append((name, None))
    return found


PIPELINE_OPTIONS = options_of(pipeline_cli)
USER_OPTIONS = options_of(user_cli)


def assert_one_error_line(result):
    assert result.exit_code in DOCUMENTED, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def pipeline_args(command, option, value, missing_db):
    """Arguments that end quickly whatever ``value`` is: the loops of monitor and notify start
    only on a usable database and a consistent configuration, which these are not."""
    args = [command]
    if command == "set":
        args += [value if option is None else "filtered", "--reason", "r"]
    if command == "monitor":
        args = ["--db", missing_db, *args]  # a valid value ends at the missing file (exit 5)
    if command == "notify" and option in ("--from-id", "--metrics-port"):
        args += ["--webhook", "ftp://x"]  # refused before any port is bound (exit 2)
    elif command == "notify":
        args += ["--from-id", "99999"]  # past the newest change: refused at start (exit 2)
    if option is not None:
        args += [option, value]
    return args


HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize(("command", "option"), PIPELINE_OPTIONS)
@HYPOTHESIS
@given(value=hostile_values)
def test_every_pipeline_option_takes_hostile_values_in_one_line(
    cli, tmp_path, command, option, value
):
    if option in ("--state", "--metrics-file") and value.strip():
        # Files the command writes: the hostile text is their name, in tmp_path (a NUL stays).
        value = str(tmp_path / value.replace("/", "_"))
    result = cli(*pipeline_args(command, option, value, str(tmp_path / "missing.db")))
    assert_one_error_line(result)


@pytest.mark.parametrize(("command", "option"), USER_OPTIONS)
@HYPOTHESIS
@given(value=hostile_values)
def test_every_user_option_takes_hostile_values_in_one_line(
    runner, tmp_path, command, option, value
):
    users_file = str(tmp_path / "users.htpasswd")
    if option == "--users-file" and not value.startswith("/") and value.strip():
        value = str(tmp_path / value)  # relative: in tmp_path, never in the checkout
    args = ["user", command]
    if command in ("add", "remove"):
        args.append(value if option is None else "alice")
    if option != "--users-file":
        args += ["--users-file", users_file]
    if command == "add":
        args.append("--password-stdin")
    if option is not None:
        args += [option, value]
    result = runner.invoke(args=args, input="short\n")  # too short: nothing is written
    assert_one_error_line(result)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["history", "--limit", "9223372036854775808"], "--limit"),
        (["history", "--limit", "١٧"], "--limit"),
        (["set", "raw", "--reason", "r", "--expect-id", "٣"], "--expect-id"),
        (["monitor", "--interval", "nan"], "--interval"),
        (["monitor", "--interval", "inf"], "--interval"),
        (["monitor", "--interval", "-1"], "--interval"),
        (["monitor", "--interval", "1e400"], "--interval"),
        (["monitor", "--interval", "1_0"], "--interval"),
        (["monitor", "--interval", "١"], "--interval"),
        (["monitor", "--count", "١"], "--count"),
        (["notify", "--interval", "nan"], "--interval"),
        (["notify", "--max-backoff", "nan"], "--max-backoff"),
        (["notify", "--metrics-port", "٨٠"], "--metrics-port"),
        (["notify", "--webhook", "http://[::1"], "webhook 1: the URL is malformed"),
        (["--db", "", "get"], "empty path"),
        (["get", "--db", ""], "empty path"),
    ],
)
def test_the_reported_options_are_one_error_line(cli, args, fragment):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result)
    assert fragment in result.stderr


def test_a_state_file_of_deeply_nested_json_is_one_error_line(cli, tmp_path):
    state = tmp_path / "state.json"
    state.write_text("[" * 100_000 + "]" * 100_000)
    result = cli("notify", "--webhook", "https://hooks.example.org/x", "--state", state)
    assert result.exit_code == 2
    assert_one_error_line(result)
    assert "is not a notifier state" in result.stderr


def test_user_add_with_a_latin1_password_on_stdin_is_one_error_line(runner, tmp_path):
    users_file = tmp_path / "users.htpasswd"
    args = ["user", "add", "alice", "--users-file", str(users_file), "--password-stdin"]
    result = runner.invoke(args=args, input=b"caf\xe9-long-password\n")
    assert result.exit_code == 2, result.output
    assert "the password is not UTF-8 text" in result.output
    assert "Traceback" not in result.output
    assert not users_file.exists()


@pytest.mark.slow
def test_user_add_with_a_latin1_password_typed_in_a_terminal_is_one_error_line(tmp_path):
    """The prompt needs a terminal (without one, user add points to --password-stdin)."""
    from ptylib import run_in_terminal
    from workers import clean_env

    users_file = tmp_path / "users.htpasswd"
    argv = [sys.executable, "-m", "flask", "--app", "webapp", "user", "add", "alice"]
    env = clean_env(PIPELINE_DB=tmp_path / "missing.db", LC_ALL="C.UTF-8")
    session = run_in_terminal(
        [*argv, "--users-file", str(users_file)], password=b"caf\xe9-long-password", env=env
    )
    assert session.returncode == 2, session.output
    assert "the password is not UTF-8 text" in session.output
    assert "Traceback" not in session.output
    assert not users_file.exists()


def test_huge_but_valid_numbers_are_taken(cli, db_path):
    result = cli("history", "--limit", str(2**63 - 1), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("reason", ["why\n", "\nwhy", "why\r\n", "\twhy", "why\x1c", "why\x85"])
def test_a_reason_with_a_refused_character_at_an_end_is_refused_not_stripped(cli, db_path, reason):
    result = cli("set", "filtered", "--reason", reason)
    assert result.exit_code == 2
    assert_one_error_line(result)
    assert "reason must be one line of plain text" in result.stderr
    assert json.loads(cli("get", "--json").stdout)["id"] is None  # nothing written


@pytest.mark.parametrize("value", ["١٧", "１７", "1_0", "+3"])
def test_a_setting_in_other_digits_is_one_error_line(cli, monkeypatch, value):
    monkeypatch.setenv("PIPELINE_PROXY_COUNT", value)
    from webapp.core.config import load_settings
    from webapp.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="PIPELINE_PROXY_COUNT must be a whole number"):
        load_settings({"PIPELINE_PROXY_COUNT": value})
    if cli.name == "pipeline-manager":  # flask's app was built before the variable was set
        result = cli("get")
        assert result.exit_code == 2
        assert_one_error_line(result)


def test_json_output_and_the_audit_line_hold_no_raw_c1_control(cli, db_path):
    """A CSI (U+009B) or a bidi override in another tool's row is a \\u escape in every JSON
    line a terminal may show: the same value for a JSON reader (issue 15.13)."""
    hostile = "raw\x9b2J\u202e"
    with PipelineStore(db_path) as store:
        store.initialize()
    conn = sqlite3.connect(db_path)
    with conn:  # the seed table's CHECK refuses such a type: a table without it
        conn.execute("DROP TABLE pipeline_config")
        conn.execute(LOOSE_TABLE)
    conn.close()
    insert_row(db_path, hostile, "2026-11-25 10:00:00", updated_by=hostile)
    result = cli("get", "--json")
    assert result.exit_code == 0, result.output
    assert "\x9b" not in result.stdout and "\u202e" not in result.stdout
    assert "\\u009b" in result.stdout
    record = json.loads(result.stdout)
    assert record["pipeline_type"] == record["updated_by"] == hostile
    result = cli("set", "filtered", "--reason", "r", "--json")
    assert result.exit_code == 0, result.output
    audit = result.stderr.strip().splitlines()[-1]
    assert json.loads(audit)["from"] == hostile and "\x9b" not in audit
    assert json.loads(result.stdout)["previous"] == hostile


@pytest.mark.parametrize(
    "args",
    [
        ["--from-id", "99999", "--webhook", "https://hooks.example.org/x"],
        ["--db", "missing.db", "--webhook", "https://hooks.example.org/x"],
        ["--webhook", "http://[::1"],
    ],
)
def test_notify_refused_at_start_makes_no_file(cli, tmp_path, args):
    state, metrics = tmp_path / "state.json", tmp_path / "notify.prom"
    result = cli("notify", *args, "--state", state, "--metrics-file", metrics)
    assert result.exit_code in (2, 5)
    assert_one_error_line(result)
    assert sorted(tmp_path.iterdir()) == sorted(tmp_path.glob("sensor_data.db*"))


@pytest.mark.parametrize(
    "args",
    [
        ["notify", "--webhook", "http://127.0.0.1:9/", "--state", "{fifo}"],
        ["notify", "--webhook", "http://127.0.0.1:9/", "--metrics-file", "{fifo}"],
    ],
)
def test_a_file_the_notifier_replaces_must_be_a_regular_file(cli, db_path, tmp_path, args):
    """A rename over a device or pipe replaces it (as root: /dev/null); refused at start."""
    fifo = tmp_path / "a-pipe"
    os.mkfifo(fifo)
    before = sorted(os.listdir(tmp_path))
    result = cli(*[arg.format(fifo=fifo) for arg in args])
    assert result.exit_code == 2, result.output
    assert_one_error_line(result)
    assert "is a named pipe: name a regular file" in result.stderr
    assert sorted(os.listdir(tmp_path)) == before  # no lock, state or temporary file beside it
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_user_add_refuses_a_users_file_that_is_not_a_regular_file(runner, tmp_path):
    fifo = tmp_path / "users.htpasswd"
    os.mkfifo(fifo)
    args = ["user", "add", "alice", "--users-file", str(fifo), "--password-stdin"]
    result = runner.invoke(args=args, input="a-long-enough-password\n")
    assert result.exit_code == 2, result.output  # like a directory: checked before the password
    assert "is a named pipe, not a users file" in result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".users.htpasswd")]
