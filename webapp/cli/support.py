"""What every command of the ``pipeline`` group shares: one-line errors, the settings of either
entrance, ``--db`` before or after the command, and terminal-safe output. No Flask.
"""

import functools
import json
import os

import click

from webapp.core.config import EMBEDDED_DB, load_settings
from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.events import logger_on_stderr
from webapp.core.store import PipelineStore
from webapp.core.text import terminal_safe
from webapp.core.timefmt import iso


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


def interval_option(help_text: str):
    """``--interval SECONDS``, as ``monitor`` and ``notify`` take it."""
    return click.option(
        "--interval",
        type=click.FloatRange(min=0.05, max=3600),
        default=1.0,
        show_default=True,
        metavar="SECONDS",
        help=help_text,
    )


def fleet_options(command):
    """``notify``'s fleet target: ``--fleet``, ``--node``, ``--label``, ``--heartbeat``,
    ``--accept-rollouts`` (checked by webapp.notify.fleet, whose errors name them)."""
    options = [
        click.option(
            "--fleet",
            "url",
            metavar="URL",
            help="Report this node to the fleet centre at URL (signed with PIPELINE_FLEET_KEY "
            "or _FILE). Default: $PIPELINE_FLEET_URL.",
        ),
        click.option("--node", metavar="NAME", help="This node's name. Default: host name."),
        click.option(
            "--label",
            "labels",
            multiple=True,
            metavar="KEY=VALUE",
            help="A label of this node (repeatable). Default: $PIPELINE_NODE_LABELS.",
        ),
        click.option(
            "--heartbeat",
            metavar="SECONDS",
            help="Seconds between reports while nothing changes (5-86400). Default: 60.",
        ),
        click.option(
            "--accept-rollouts",
            is_flag=True,
            help="Apply what a fleet rollout asks for (in the centre's signed answer).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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


def audit_on_stderr():
    """Write the store's audit line (one JSON line per change) to stderr while a command runs.

    A Kubernetes or Bacalhau job's log then holds the same audit record the server logs.
    """
    return logger_on_stderr("pipeline.audit")


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
