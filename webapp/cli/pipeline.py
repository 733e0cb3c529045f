"""The ``pipeline`` command group: get, set, history, monitor, notify (and migrate).

One definition serves two entrances: ``pipeline-manager`` (a console script that imports no web
stack, for edge jobs that start it on every node) and ``flask --app webapp pipeline``. Thin: each
command parses options, calls one store function and formats the answer; the plumbing they share
is in cli_support.py. Errors an operator can cause end as one ``Error: ...`` line and the exit
code README documents.
"""

import contextlib
import itertools
import sys

import click

from webapp.cli.migrate import migrate_command
from webapp.cli.notify import notify_command
from webapp.cli.support import (
    OneLineUsageErrors,
    WholeNumber,
    audit_on_stderr,
    click_error,
    database_line,
    db_option,
    default_operator,
    describe,
    echo_json,
    interval_option,
    open_store,
    reports_errors,
    safe,
    when_set,
)
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.core.text import terminal_safe

TYPE_METAVAR = "{" + "|".join(PIPELINE_TYPES) + "}"

__all__ = ["click_error", "main", "pipeline_cli"]


@click.group("pipeline", cls=OneLineUsageErrors)
@db_option
@click.pass_context
def pipeline_cli(ctx):
    """Show and change which pipeline the uploader applies.

    \b
    Examples:
      pipeline-manager --db /data/sensor_data.db get
      flask --app webapp pipeline --db /data/sensor_data.db get
    """
    # Stored text may hold anything: never let an odd character end the command mid-output.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")


@pipeline_cli.command("get")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record.")
@click.pass_context
@reports_errors
def get_command(ctx, as_json):
    """Show the current pipeline, its bucket, and who set it when.

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db get --json
    """
    with open_store(ctx) as store:
        change = store.current()
        if as_json:
            echo_json(change.to_dict())
            return
        click.echo(f"pipeline: {safe(change.type_label)}")
        click.echo(f"bucket:   {safe(change.bucket) if change.managed else '(none)'}")
        if change.is_default:
            click.echo("set:      never (default)")
        else:
            click.echo(
                f"set:      {when_set(change)} by {safe(change.updated_by)} "
                f"(change #{change.id}, via {safe(change.source)})"
            )
        if change.reason:
            click.echo(f"reason:   {safe(change.reason)}")
        click.echo(database_line(store))


@pipeline_cli.command("set")
@click.argument("pipeline_type", metavar=TYPE_METAVAR)
@db_option
@click.option("--by", "updated_by", metavar="NAME", help="Who makes the change. Default: OS user.")
@click.option(
    "--reason",
    metavar="TEXT",
    help="Why (one line); kept in the history. Required unless PIPELINE_REQUIRE_REASON=0.",
)
@click.option(
    "--expect-id",
    type=WholeNumber(0),
    metavar="N",
    help="Only change if the current change id is N (0 = never set); else exit 3.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the resulting record with `changed`.")
@click.pass_context
@reports_errors
def set_command(ctx, pipeline_type, updated_by, reason, expect_id, as_json):
    """Switch the uploader to PIPELINE_TYPE (a no-op if it is already current).

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db set filtered --by ops --reason "Enable filtering"
    """
    with open_store(ctx, write=True) as store, audit_on_stderr():
        result = store.set(
            pipeline_type,
            updated_by=default_operator() if updated_by is None else updated_by,
            reason=reason,
            source="cli",
            expect_id=expect_id,
        )
        change = result.change
        if as_json:
            echo_json(result.to_dict())
        elif result.changed:
            click.echo(
                f"pipeline set to {change.pipeline_type} ({safe(change.bucket)}), was "
                f"{safe(change.previous or 'raw (default)')}: change #{change.id} in "
                f"{terminal_safe(store.path)}"
            )
        else:
            click.echo(
                f"pipeline is already {change.pipeline_type} (change #{change.id}) in "
                f"{terminal_safe(store.path)}; nothing written"
            )


@pipeline_cli.command("history")
@db_option
@click.option(
    "--limit",
    type=WholeNumber(1),
    default=20,
    show_default=True,
    help="How many changes to show, newest first.",
)
@click.option("--all", "show_all", is_flag=True, help="Every change (streamed; ignores --limit).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
@reports_errors
def history_command(ctx, limit, show_all, output_format, as_json):
    """List changes, newest first.

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db history --all --format csv > changes.csv
    """
    from webapp.core.export import write_csv, write_json

    with open_store(ctx) as store:
        rows = store.iter_rows()
        if not show_all:
            rows = itertools.islice(rows, limit)
        # Read the first row before printing anything: a bad database is one Error: line.
        rows = itertools.chain(list(itertools.islice(rows, 1)), rows)
        if as_json or output_format == "json":
            write_json(rows, store.buckets, sys.stdout, terminal=sys.stdout.isatty())
            click.echo()
            return
        if output_format == "csv":
            write_csv(rows, store.buckets, sys.stdout, terminal=sys.stdout.isatty())
            return
        click.echo(database_line(store))
        empty = True
        for change in map(store.change_of, rows):
            click.echo(describe(change))
            empty = False
        if empty:
            click.echo("no changes yet: the uploader uses the default pipeline (raw)")


@pipeline_cli.command("monitor")
@db_option
@interval_option("Seconds between checks.")
@click.option("--count", type=WholeNumber(1), help="Stop after N changes (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
@reports_errors
def monitor_command(ctx, interval, count, as_json):
    """Print the current pipeline, then one line per change as it happens (Ctrl+C stops).

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db monitor --json | tee pipeline-changes.jsonl
    """
    from webapp.core.watch import Watcher

    with open_store(ctx) as store, contextlib.suppress(KeyboardInterrupt):
        # Ctrl+C is how an operator ends a monitor: not an error.
        watcher = Watcher(store, warn=lambda line: click.echo(f"Warning: {line}", err=True))
        current = watcher.start()
        if as_json:
            echo_json(current.to_dict())
        else:
            click.echo(database_line(store))
            number = " (default)" if current.is_default else f", change #{current.id}"
            bucket = f" ({safe(current.bucket)})" if current.managed else ""
            click.echo(f"current: {safe(current.type_label)}{bucket}{number}")
        for seen, change in enumerate(watcher.follow(interval), 1):
            echo_json(change.to_dict()) if as_json else click.echo(describe(change))
            if count is not None and seen >= count:
                break


pipeline_cli.add_command(migrate_command)
pipeline_cli.add_command(notify_command)

#: The ``pipeline-manager`` console script: the same group, without Flask.
main = pipeline_cli
