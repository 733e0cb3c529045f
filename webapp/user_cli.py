"""The ``flask user`` command group: manage operator accounts without Apache's tools."""

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from . import accounts
from .cli_support import OneLineUsageErrors, reports_errors


class UserGroup(OneLineUsageErrors, AppGroup):
    """``flask user``: one-line usage errors, commands run inside the app context."""


user_cli = UserGroup("user", help="Manage operator accounts (the PIPELINE_USERS_FILE htpasswd).")


@user_cli.command("add")
@click.argument("name")
@click.option(
    "--users-file",
    metavar="PATH",
    help="htpasswd file to write. Default: $PIPELINE_USERS_FILE.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@click.option("--rounds", type=click.IntRange(4, 16), default=12, show_default=True, hidden=True)
@reports_errors
def add_command(name, users_file, password_stdin, rounds):
    """Add operator NAME, or set a new password if NAME exists (bcrypt, like htpasswd -B).

    \b
    Example:
      flask --app webapp user add alice --users-file /etc/pipeline/users.htpasswd
      printf '%s\\n' "$PASSWORD" | flask --app webapp user add ci-bot --password-stdin
    """
    path = users_file or current_app.config.get("USERS_FILE")
    if not path:
        raise click.UsageError("set PIPELINE_USERS_FILE or pass --users-file PATH")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        created = accounts.set_password(path, name, password, rounds=rounds)
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
    click.echo(f"{'added' if created else 'updated'} operator {name.strip()} in {path}")
