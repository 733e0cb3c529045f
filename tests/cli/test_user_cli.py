"""``flask user add`` as a newcomer meets it: paths are checked before the password is asked
for, and without a terminal the command says to use ``--password-stdin`` (never ``Aborted!``).

Prompts run in a real pseudo-terminal (tests/ptylib.py), as an operator's shell gives them.
"""

import subprocess
import sys

import pytest
from ptylib import run_in_terminal
from workers import ROOT, clean_env

from webapp.accounts import users as users_module

PASSWORD = "terminal-password-1"


def user_add(*args):
    return [sys.executable, "-m", "flask", "--app", "webapp", "user", "add", *map(str, args)]


def piped(command, stdin_text, env):
    """Run ``command`` as a script does: stdin, stdout and stderr are pipes, no terminal."""
    return subprocess.run(
        command, input=stdin_text, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def env(tmp_path):
    return clean_env(PIPELINE_DB=tmp_path / "missing.db")  # user commands never open it


def test_in_a_terminal_it_asks_twice_and_writes_the_file(tmp_path, env):
    users = tmp_path / "users.htpasswd"
    session = run_in_terminal(
        user_add("alice", "--users-file", users, "--rounds", "4"), password=PASSWORD, env=env
    )
    assert session.returncode == 0, session.output
    assert session.prompts == 2
    assert f"added operator alice in {users} (created, mode 0640)" in session.output
    assert users_module.verify(users, "alice", PASSWORD)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("no/such/dir/users.htpasswd", "does not exist: create it first"),
        ("a-directory", "is a directory, not a users file"),
    ],
)
def test_a_bad_path_is_refused_before_the_password_is_asked(tmp_path, env, where, message):
    (tmp_path / "a-directory").mkdir()
    target = tmp_path / where
    session = run_in_terminal(user_add("alice", "--users-file", target), password=PASSWORD, env=env)
    assert session.returncode == 2, session.output
    assert session.prompts == 0, session.output  # refused before any prompt
    (line,) = session.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


def test_without_a_terminal_it_names_password_stdin(tmp_path, env):
    users = tmp_path / "users.htpasswd"
    result = piped(user_add("alice", "--users-file", users), f"{PASSWORD}\n{PASSWORD}\n", env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: no terminal to ask for the password")
    assert "--password-stdin" in line and "Aborted" not in result.stderr + result.stdout
    assert not users.exists()
    # The command it suggests works as given.
    suggested = piped(
        user_add("alice", "--users-file", users, "--password-stdin", "--rounds", "4"),
        f"{PASSWORD}\n",
        env,
    )
    assert suggested.returncode == 0, suggested.stderr
    assert users_module.verify(users, "alice", PASSWORD)


def test_a_bad_name_is_refused_before_the_path_and_the_password(tmp_path, env):
    session = run_in_terminal(
        user_add("al ice", "--users-file", tmp_path / "none" / "users"), password=PASSWORD, env=env
    )
    assert session.returncode == 2 and session.prompts == 0, session.output
    assert "name" in session.output and "does not exist" not in session.output
