"""The ``migrate`` command: the original tool's ``pipeline_config`` becomes this tool's, in one
transaction (the logic is :mod:`webapp.core.migrate`; this only names the database and prints)."""

import click

from webapp.cli.support import db_option, open_store, reports_errors, safe, settings


@click.command("migrate")
@db_option
@click.pass_context
@reports_errors
def migrate_command(ctx):
    """Move the original tool's pipeline_config table to this tool's (keeps the old table).

    Recognises every table the original tool made (the single-row table with config_json and
    is_active, the is_active history, its first CHECK list), copies the rows in one transaction
    with time stamps in this tool's format and the active row last, and adds the indexes
    readers need. Refuses, changing nothing (exit 2), rows the new table would refuse. Safe to
    run again: a second run has nothing to migrate. Stop the original tool's writers first.

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db migrate
    """
    from webapp.core.migrate import migrate

    with open_store(ctx, write=True) as store:  # names the database exactly as `set` does
        path = store.path
    click.echo(f"database: {safe(path)}")
    for line in migrate(path, write_timeout=settings(ctx)["WRITE_TIMEOUT"]):
        click.echo(safe(line))
