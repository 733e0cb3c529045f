"""The ``pipeline`` command group: get, set, history, monitor (and notify, see notify.py).

One definition serves two entrances: ``pipeline-manager`` (a console script that imports no web
stack, for edge jobs that start it on every node) and ``flask --app webapp pipeline``. Thin: each
command parses options, calls one store function and formats the answer. Errors an operator can
cause end as one ``Error: ...`` line and the exit code README documents.
"""

import contextlib
import functools
import itertools
import json
import os
import sys

import click

from .config import EMBEDDED_DB, load_settings
from .errors import InvalidInput, PipelineError
from .pipelines import PIPELINE_TYPES
from .store import PipelineStore
from .text import terminal_safe
from .timefmt import iso

TYPE_METAVAR = "{" + "|".join(PIPELINE_TYPES) + "}"


def click_error(error: PipelineError) -> click.ClickException:
    """Return ``error`` as click prints it: one ``Error:`` line, its documented exit code."""
    exception = click.ClickException(terminal_safe(str(error)))
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


def under_flask(ctx) -> bool:
    """True when run as ``flask ... pipeline`` (flask's ScriptInfo carries the app)."""
    return callable(getattr(ctx.find_root().obj, "load_app", None))


def command_hint(ctx) -> str:
    """Return this command's path as an operator can type it again (flask needs ``--app``)."""
    if not under_flask(ctx):
        return ctx.command_path
    below_root = ctx.command_path.split(" ", 1)[1:]  # the root is flask's program name
    return " ".join(["flask --app webapp", *below_root])


class OneLineUsageErrors(click.Group):
    """A command group whose usage errors are one ``Error:`` line (exit 2), like our own errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            # click would print the usage block and a hint above the error; operators and
            # scripts get the one line that matters, and --help is named for the rest.
            where = command_hint(error.ctx or ctx)
            message = terminal_safe(error.format_message())
            line = click.ClickException(f"{message} (see: {where} --help)")
            line.exit_code = error.exit_code
            raise line from None


def settings(ctx) -> dict:
    """Return the ``PIPELINE_*`` settings: the app's under flask, else the environment's."""
    root = ctx.find_root()
    if "pipeline.settings" not in root.meta:
        if under_flask(ctx):
            root.meta["pipeline.settings"] = root.obj.load_app().config
        else:
            try:
                root.meta["pipeline.settings"] = load_settings(os.environ)
            except InvalidInput as error:
                raise click_error(error) from None
    return root.meta["pipeline.settings"]


def remember_db(ctx, param, value):
    """Take ``--db`` before or after the subcommand; the later one wins."""
    if value is not None:
        if not value.strip():
            raise click.BadParameter("must name a database file (got an empty path)")
        ctx.find_root().meta["pipeline.db"] = value
    return value


db_option = click.option(
    "--db",
    metavar="PATH",
    expose_value=False,
    callback=remember_db,
    help="SQLite database to manage (must exist). Default: $PIPELINE_DB.",
)


def open_store(ctx, *, write=False) -> PipelineStore:
    """Open the store on ``--db``, else ``PIPELINE_DB``; writes never guess a database."""
    config = settings(ctx)
    path = ctx.find_root().meta.get("pipeline.db") or config.get("DB")
    if write and not path:
        raise InvalidInput(
            "no database named: pass --db PATH or set PIPELINE_DB (the embedded demo database "
            f"is --db {EMBEDDED_DB})"
        )
    return PipelineStore.from_settings(config, path)


def database_line(store) -> str:
    demo = " (embedded demo database)" if store.db.create else ""
    return f"database: {terminal_safe(os.path.abspath(store.path))}{demo}"


@contextlib.contextmanager
def audit_on_stderr():
    """Write the store's audit line (one JSON line per change) to stderr while a command runs.

    A Kubernetes or Bacalhau job's log then holds the same audit record the server logs, while
    stdout stays the command's answer.
    """
    import logging

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
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def echo_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, allow_nan=False))


def safe(value) -> str:
    return terminal_safe("?" if value is None else value)


def describe(change) -> str:
    """Return one terminal-safe line for a change: when, from → to, who, reason."""
    when = iso(change.updated_at) or safe(change.updated_at_text)
    previous = safe(change.previous or "(default)")
    line = f"{when}  #{change.id}  {previous} → {safe(change.type_label)}"
    line += f" ({safe(change.bucket)})" if change.managed else ""
    line += f"  by {safe(change.updated_by)}"
    if change.source:
        line += f" via {safe(change.source)}"
    if change.reason:
        line += f": {safe(change.reason)}"
    return line


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
            when = iso(change.updated_at) or safe(change.updated_at_text)
            click.echo(
                f"set:      {when} by {safe(change.updated_by)} "
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
    type=click.IntRange(min=0),
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
    type=click.IntRange(min=1),
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
    from .export import write_csv, write_json

    with open_store(ctx) as store:
        rows = store.iter_rows()
        if not show_all:
            rows = itertools.islice(rows, limit)
        # Read the first row before printing anything: a bad database is one Error: line.
        rows = itertools.chain(list(itertools.islice(rows, 1)), rows)
        if as_json or output_format == "json":
            write_json(rows, store.buckets, sys.stdout)
            click.echo()
            return
        if output_format == "csv":
            write_csv(rows, store.buckets, sys.stdout)
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
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05, max=3600),
    default=1.0,
    show_default=True,
    help="Seconds between checks.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N changes (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
@reports_errors
def monitor_command(ctx, interval, count, as_json):
    """Print the current pipeline, then one line per change as it happens (Ctrl+C stops).

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db monitor --json | tee pipeline-changes.jsonl
    """
    from .watch import Watcher

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


@pipeline_cli.command("notify")
@db_option
@click.option(
    "--webhook",
    "webhook_urls",
    multiple=True,
    metavar="URL",
    help="POST each change to URL (repeatable). Default: $PIPELINE_WEBHOOKS (comma-separated).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05, max=3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between checks of the database.",
)
@click.option(
    "--state",
    "state_path",
    metavar="PATH",
    help="Where each webhook's last acknowledged change is kept. "
    "Default: pipeline-notify-state.json beside the database.",
)
@click.option(
    "--from-id",
    type=click.IntRange(min=0),
    metavar="N",
    help="A webhook with no state yet gets every change after N (default: only new changes).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    metavar="PORT",
    help="Serve Prometheus /metrics and /healthz on PORT (all interfaces).",
)
@click.option(
    "--metrics-file",
    metavar="PATH",
    help="Write the metrics to PATH (node_exporter's textfile collector).",
)
@click.option(
    "--max-backoff",
    type=click.FloatRange(min=0.1, max=3600),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait, in seconds, between two attempts to post one change.",
)
@click.pass_context
@reports_errors
def notify_command(
    ctx, webhook_urls, interval, state_path, from_id, metrics_port, metrics_file, max_backoff
):
    """Post every pipeline change to webhooks, in order, at least once (SIGTERM stops).

    \b
    Example:
      pipeline-manager --db /data/sensor_data.db notify --webhook https://hooks.example.org/x
    """
    # Imported here: the other commands start fast on small boards without them.
    from .config import webhook_secret
    from .notify import Notifier, logging_to_stderr, serve
    from .notify_state import NotifyState, default_path
    from .webhooks import parse_webhooks, split_setting

    config = settings(ctx)
    hooks = parse_webhooks(webhook_urls or split_setting(config.get("WEBHOOKS")))
    secret = webhook_secret(config)
    database = open_store(ctx).path  # each thread of the notifier opens its own connection
    state = NotifyState.open(state_path or default_path(database))
    notifier = Notifier(
        functools.partial(open_store, ctx),
        hooks,
        state,
        secret=secret,
        interval=interval,
        from_id=from_id,
        max_backoff=max_backoff,
    )
    with logging_to_stderr():
        serve(notifier, metrics_port=metrics_port, metrics_file=metrics_file)


#: The ``pipeline-manager`` console script: the same group, without Flask.
main = pipeline_cli
