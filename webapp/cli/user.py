"""The ``flask user`` command group: manage operator accounts without Apache's tools.

Every command that changes the file replaces it atomically and keeps its owner, group and mode
(users_file.py); names and passwords follow webapp.accounts.users' rules.
"""

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from webapp.accounts import users
from webapp.accounts.users_file import Rewrite, check_target, remove_account, set_password
from webapp.cli.support import OneLineUsageErrors, WholeNumber, a_path, reports_errors
from webapp.core.errors import InvalidInput
from webapp.core.text import terminal_safe


class UserGroup(OneLineUsageErrors, AppGroup):
    """``flask user``: one-line usage errors, commands run inside the app context."""


user_cli = UserGroup(
    "user",
    help=(
        "Manage operator accounts (the PIPELINE_USERS_FILE htpasswd, bcrypt only).\n\n"
        f"Names use {users.NAME_CHARACTERS}; passwords have at least "
        f"{users.MIN_PASSWORD_LENGTH} characters."
    ),
)

users_file_option = click.option(
    "--users-file",
    metavar="PATH",
    callback=a_path,
    help="htpasswd file. Default: $PIPELINE_USERS_FILE.",
)


def file_path(users_file_arg) -> str:
    path = users_file_arg or current_app.config.get("USERS_FILE")
    if not path:
        raise click.UsageError("set PIPELINE_USERS_FILE or pass --users-file PATH")
    return path


def written(action: str, name: str, result: Rewrite) -> str:
    created = f" (created, mode {result.mode:04o})" if result.file_created else ""
    return f"{action} operator {name} in {result.path}{created}"


@user_cli.command("add")
@click.argument("name")
@users_file_option
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@click.option("--rounds", type=WholeNumber(4, 16), default=12, show_default=True, hidden=True)
@reports_errors
def add_command(name, users_file, password_stdin, rounds):
    """Add operator NAME, or set a new password if NAME exists (bcrypt, like htpasswd -B).

    NAME uses letters, digits, '.', '_', '-' and '@'; the password has at least 12
    characters. A new file is created with mode 0640; an existing one keeps its owner, group and
    mode. The directory must exist.

    \b
    Example:
      flask --app webapp user add alice --users-file /etc/pipeline/users.htpasswd
      printf '%s\\n' "$PASSWORD" | flask --app webapp user add ci-bot --password-stdin
    """
    path = file_path(users_file)
    # Everything that can be checked is checked before the password is typed (twice).
    name = users.validate_name(name)
    check_target(path)
    password = read_password(password_stdin, name)
    result = rewriting(path, lambda: set_password(path, name, password, rounds))
    click.echo(written("added" if result.account_created else "updated", name, result))


@user_cli.command("remove")
@click.argument("name")
@users_file_option
@reports_errors
def remove_command(name, users_file):
    """Remove operator NAME; their sessions end at their next request.

    The file is replaced atomically and keeps its owner, group and mode.

    \b
    Example:
      flask --app webapp user remove alice --users-file /etc/pipeline/users.htpasswd
    """
    path = file_path(users_file)
    result = rewriting(path, lambda: remove_account(path, name))
    click.echo(f"removed operator {terminal_safe(name)} from {result.path}")


@user_cli.command("list")
@users_file_option
@reports_errors
def list_command(users_file):
    """List the operators who can sign in, one per line; unusable lines are named on stderr.

    \b
    Example:
      flask --app webapp user list --users-file /etc/pipeline/users.htpasswd
    """
    path = file_path(users_file)
    found = users.load(path)
    if found.problem:
        raise unusable_file(f"the users file {path} {found.problem}")
    for name in sorted(found.users):
        click.echo(terminal_safe(name))  # a hand-edited file may hold anything
    for number, why in found.skipped:
        click.echo(f"line {number}: {terminal_safe(why)}; it never matches", err=True)


def read_password(from_stdin: bool, name: str) -> str:
    """Read the new password from stdin or the terminal; bytes that are not UTF-8 are refused."""
    if not from_stdin and not (sys.stdin and sys.stdin.isatty()):
        raise click.UsageError(
            "no terminal to ask for the password: pass it on stdin with --password-stdin, "
            f"e.g. printf '%s\\n' \"$PASSWORD\" | flask --app webapp user add {name} "
            "--users-file PATH --password-stdin"
        )
    try:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        password.encode("utf-8")  # a C locale reads other bytes as lone surrogates
    except UnicodeError:
        raise InvalidInput(
            "the password is not UTF-8 text (a Latin-1 terminal?): type it in a UTF-8 "
            "terminal, or pipe UTF-8 to --password-stdin"
        ) from None
    return password


def rewriting(path, write) -> Rewrite:
    """Run ``write()``; a file system refusal is one ``Error:`` line naming the file."""
    try:
        return write()
    except OSError as error:
        raise unusable_file(f"cannot write {path}: {error.strerror}") from None


def unusable_file(message: str) -> click.ClickException:
    """A users file that cannot be read or written: one line, exit 5 (README: Exit codes)."""
    error = click.ClickException(terminal_safe(message))
    error.exit_code = 5
    return error
