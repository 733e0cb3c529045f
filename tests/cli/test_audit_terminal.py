"""``set``'s JSON audit line goes to stderr for logs (a job, a pipe, a redirect), never into an
operator's terminal (README: "Health and metrics"). Real terminals: tests/ptylib.py."""

import json
import subprocess

import pytest
from ptylib import run_in_terminal
from workers import ENTRANCES, clean_env, cli_command


@pytest.mark.parametrize("entrance", ENTRANCES)
def test_no_audit_line_in_a_terminal(db_path, entrance):
    command = cli_command(
        *("--db", db_path, "set", "filtered", "--by", "ops", "--reason", "at a terminal"),
        entrance=entrance,
    )
    session = run_in_terminal(command, env=clean_env())
    assert session.returncode == 0, session.output
    assert session.output.startswith("pipeline set to filtered (enriched), was raw (default)")
    assert '"event"' not in session.output and len(session.output.strip().splitlines()) == 1


@pytest.mark.parametrize("entrance", ENTRANCES)
def test_the_audit_line_goes_to_stderr_when_it_is_not_a_terminal(db_path, entrance):
    command = cli_command(
        *("--db", db_path, "set", "aggregated", "--by", "ops", "--reason", "into a log"),
        entrance=entrance,
    )
    session = run_in_terminal(command, env=clean_env(), stderr=subprocess.PIPE)
    assert session.returncode == 0, session.output
    answer, stderr = session.output.split("\n--- stderr\n")
    assert answer.startswith("pipeline set to aggregated") and '"event"' not in answer
    (line,) = stderr.splitlines()
    record = json.loads(line)
    assert (record["event"], record["to"], record["reason"]) == (
        "pipeline_change",
        "aggregated",
        "into a log",
    )
