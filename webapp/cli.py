"""The ``flask pipeline`` command group: get, set, history and monitor.

Thin: each command parses options, calls one store function and formats the answer. Errors an
operator can cause end as one ``Error: ...`` line and the exit code README documents.
"""

import contextlib
import functools
import getpass
import json
import logging
import os
import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup

from .db import open_store
from .errors import PipelineError
from .export import write_csv
from .pipelines import PIPELINE_TYPES
from .store import iso_utc

TYPE_METAVAR = "{" + "|".join(PIPELINE_TYPES) + "}"


def click_error(error: PipelineError) -> click.ClickException:
    """Return ``error`` as click prints it: one ``Error:`` line, its documented exit code."""
    exception = click.ClickException(str(error))
    exception.exit_code = error.exit_code
    return exception


def reports_errors(command):
    """Turn our errors into one ``Error:`` line and their documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PipelineError as error:
            raise click_error(error) from None

    return wrapper


def cli_store():
    """Open the store on ``--db`` / ``PIPELINE_DB``, else the embedded default database."""
    return open_store(current_app, click.get_current_context().meta.get("pipeline.db"))


@contextlib.contextmanager
def audit_on_stderr():
    """Write the store's audit line (one JSON line per change) to stderr while a command runs.

    A Kubernetes or Bacalhau job's log then holds the same audit record the server logs, while
    stdout stays the command's answer.
    """
    audit = logging.getLogger("pipeline.audit")
    handler = logging.StreamHandler(sys.stderr)
    saved_level = audit.level
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    try:
        yield
    finally:
        audit.removeHandler(handler)
        audit.setLevel(saved_level)


def default_operator() -> str:
    """Return the OS user (containers may run under a uid with no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def echo_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def describe(change) -> str:
    """Return one line for a change: when, from → to, who, reason."""
    when = iso_utc(change.updated_at) or "?"
    previous = change.previous or "(default)"
    line = f"{when}  #{change.id}  {previous} → {change.pipeline_type} ({change.bucket})"
    line += f"  by {change.updated_by or '?'}"
    if change.source:
        line += f" via {change.source}"
    if change.reason:
        line += f": {change.reason}"
    return line


class OneLineUsageErrors(AppGroup):
    """A command group whose usage errors are one ``Error:`` line (exit 2), like our own errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            # click would print the usage block and a hint above the error; operators and
            # scripts get the one line that matters, and --help is named for the rest.
            where = error.ctx.command_path if error.ctx else ctx.command_path
            line = click.ClickException(f"{error.format_message()} (see: {where} --help)")
            line.exit_code = error.exit_code
            raise line from None


@click.group("pipeline", cls=OneLineUsageErrors)
@click.option(
    "--db",
    "db_path",
    envvar="PIPELINE_DB",
    metavar="PATH",
    help="SQLite database to manage (must exist). Default: $PIPELINE_DB, else the embedded one.",
)
@click.pass_context
def pipeline_cli(ctx, db_path):
    """Show and change which pipeline the uploader applies.

    \b
    Example:
      flask --app webapp pipeline --db /data/sensor_data.db get
    """
    if db_path is not None and not db_path.strip():
        raise click.UsageError("--db must name a database file (got an empty path)")
    ctx.meta["pipeline.db"] = db_path


@pipeline_cli.command("get")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record.")
@reports_errors
def get_command(as_json):
    """Show the current pipeline, its bucket, and who set it when.

    \b
    Example:
      flask --app webapp pipeline get --json
    """
    with cli_store() as store:
        change = store.current()
    if as_json:
        echo_json(change.to_dict())
        return
    click.echo(f"pipeline: {change.pipeline_type}")
    click.echo(f"bucket:   {change.bucket}")
    if change.is_default:
        click.echo("set:      never (default)")
        return
    click.echo(
        f"set:      {iso_utc(change.updated_at)} by {change.updated_by or '?'} "
        f"(change #{change.id}, via {change.source or '?'})"
    )
    if change.reason:
        click.echo(f"reason:   {change.reason}")


@pipeline_cli.command("set")
@click.argument("pipeline_type", metavar=TYPE_METAVAR)
@click.option("--by", "updated_by", metavar="NAME", help="Who makes the change. Default: OS user.")
@click.option("--reason", metavar="TEXT", help="Why; stored in the change's metadata.")
@click.option(
    "--expect-id",
    type=click.IntRange(min=0),
    metavar="N",
    help="Only change if the current change id is N (0 = never set); else exit 3.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the resulting record with `changed`.")
@reports_errors
def set_command(pipeline_type, updated_by, reason, expect_id, as_json):
    """Switch the uploader to PIPELINE_TYPE (a no-op if it is already current).

    \b
    Example:
      flask --app webapp pipeline set filtered --by ops --reason "Enable anomaly filtering"
    """
    with cli_store() as store, audit_on_stderr():
        result = store.set(
            pipeline_type,
            updated_by=updated_by or default_operator(),
            reason=reason,
            source="cli",
            expect_id=expect_id,
        )
    if as_json:
        echo_json(result.to_dict())
    elif result.changed:
        click.echo(
            f"pipeline set to {result.change.pipeline_type} ({result.change.bucket}), "
            f"was {result.change.previous or 'raw (default)'}: change #{result.change.id}"
        )
    else:
        click.echo(
            f"pipeline is already {result.change.pipeline_type} "
            f"(change #{result.change.id}); nothing written"
        )


@pipeline_cli.command("history")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many changes to show.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@reports_errors
def history_command(limit, output_format, as_json):
    """List changes, newest first.

    \b
    Example:
      flask --app webapp pipeline history --limit 50 --format csv > changes.csv
    """
    with cli_store() as store:
        changes = store.history(limit=limit)
    if as_json or output_format == "json":
        echo_json([change.to_dict() for change in changes])
    elif output_format == "csv":
        write_csv(changes, sys.stdout)
    elif not changes:
        click.echo("no changes yet: the uploader uses the default pipeline (raw)")
    else:
        for change in changes:
            click.echo(describe(change))


@pipeline_cli.command("monitor")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between checks.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N changes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@reports_errors
def monitor_command(interval, count, as_json):
    """Print the current pipeline, then one line per change as it happens (Ctrl+C stops).

    \b
    Example:
      flask --app webapp pipeline monitor --json | tee pipeline-changes.jsonl
    """
    # Ctrl+C is how an operator ends a monitor: not an error.
    with cli_store() as store, contextlib.suppress(KeyboardInterrupt):
        watch(store, interval, count, as_json)


def watch(store, interval, count, as_json) -> None:
    current = store.current()
    if as_json:
        echo_json(current.to_dict())
    else:
        click.echo(
            f"current: {current.pipeline_type} ({current.bucket})"
            + (" (default)" if current.is_default else f", change #{current.id}")
        )
    last_id, seen = current.version, 0
    # data_version only moves when another connection commits: the cheap check each tick.
    version = store.data_version()
    while count is None or seen < count:
        time.sleep(interval)
        new_version = store.data_version()
        if new_version == version:
            continue
        version = new_version
        for change in store.changes_after(last_id):
            echo_json(change.to_dict()) if as_json else click.echo(describe(change))
            last_id, seen = change.id, seen + 1
            if count is not None and seen >= count:
                break
