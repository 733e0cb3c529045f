"""The ``flask --app webapp.fleet fleet`` commands: node keys and the store's migrations.

Exit codes: 0 done; 1 the fleet secret or the store cannot be used; 2 a bad name or usage.
"""

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from webapp.accounts.signatures import derive_node_key
from webapp.accounts.users import NAME_CHARACTERS
from webapp.cli.support import OneLineUsageErrors, reports_errors
from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.text import terminal_safe

from .report import ReportRefused, node_name

MAX_NAMES = 1_000_000


class FleetGroup(OneLineUsageErrors, AppGroup):
    """``flask fleet``: one-line usage errors, commands run inside the app context."""


fleet_cli = FleetGroup("fleet", help="The fleet centre: node keys, the store's schema.")


@fleet_cli.command("keys")
@reports_errors
def keys():
    """Print each node's key: names on stdin (one a line), ``NAME KEY`` lines out.

    Every name is checked before any key is printed; a bad one stops the command (exit 2).

    \b
    Example:
      printf 'edge-001\\nedge-002\\n' | flask --app webapp.fleet fleet keys > keys.txt
    """
    secret = current_app.config.get("FLEET_SECRET")
    problem = current_app.config.get("FLEET_SECRET_PROBLEM")
    if problem or not secret:
        raise PipelineError(
            problem or "set PIPELINE_FLEET_SECRET (or _FILE): node keys are derived from it"
        )
    names = read_names(sys.stdin.buffer)
    for name in names:
        click.echo(f"{name} {derive_node_key(secret, name)}")


def read_names(stream) -> list[str]:
    """Return the node names on ``stream`` (blank lines skipped); InvalidInput names a bad line."""
    names = []
    for number, raw in enumerate(stream, 1):
        if number > MAX_NAMES:
            raise InvalidInput(f"at most {MAX_NAMES} names at once")
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidInput(f"line {number}: not UTF-8 text") from None
        if not line:
            continue
        try:
            names.append(node_name({"node": line}))
        except ReportRefused as error:
            raise InvalidInput(
                f"line {number}: {terminal_safe(str(error))} (use only {NAME_CHARACTERS})"
            ) from None
    return names


@fleet_cli.group("db", cls=FleetGroup)
def db():
    """The fleet store's schema (PIPELINE_FLEET_DB)."""


@db.command("upgrade")
@reports_errors
def upgrade():
    """Migrate the fleet store to this code's schema (an empty store is created).

    \b
    Example:
      PIPELINE_FLEET_DB=postgresql://fleet@db/fleet flask --app webapp.fleet fleet db upgrade
    """
    from . import migrate
    from .store import FleetStore

    store = FleetStore.from_settings(current_app.config)
    try:
        before = migrate.schema_status(store.engine)
        if before.current not in (None, *migrate.revisions()):
            raise PipelineError(before.problem())
        after = migrate.upgrade(store.engine)
    finally:
        store.close()
    if before.current == after.current:
        click.echo(f"{store.name}: already at revision {after.current}")
    else:
        click.echo(f"{store.name}: revision {before.current or 'none'} -> {after.current}")


@db.command("status")
@reports_errors
def status():
    """Print the store's revision and this code's; exit 1 when a migration is due.

    \b
    Example:
      flask --app webapp.fleet fleet db status
    """
    from . import migrate
    from .store import FleetStore

    store = FleetStore.from_settings(current_app.config)
    try:
        found = migrate.schema_status(store.engine)
    finally:
        store.close()
    click.echo(f"{store.name}: revision {found.current or 'none'} (this code: {found.head})")
    if found.problem():
        raise PipelineError(found.problem())


from .demo import demo  # noqa: E402 (the one-command demo: webapp/fleet/demo.py)

fleet_cli.add_command(demo)
