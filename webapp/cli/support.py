"""What every command of the ``pipeline`` group shares: one-line errors, the settings of either
entrance, ``--db`` before or after the command, and terminal-safe output. No Flask.
"""

import functools
import json
import math
import os

import click

from webapp.core.config import EMBEDDED_DB, load_settings
from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.events import logger_on_stderr
from webapp.core.store import PipelineStore
from webapp.core.text import MAX_ID, json_terminal_safe, terminal_safe, whole_number
from webapp.core.timefmt import shown


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

    def make_context(self, info_name, args, parent=None, **extra):
        # The group's own options (``--db ''`` before the command) are parsed here, not in
        # invoke(): the same one line for them.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # the group's help, as asked for by giving no command
        except click.UsageError as error:
            raise one_line(error, parent) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise one_line(error, ctx) from None


def one_line(error: click.UsageError, ctx) -> click.ClickException:
    """Return a usage error as one ``Error:`` line naming --help (exit 2).

    click would print the usage block and a hint above the error; operators and scripts get
    the one line that matters, and --help is named for the rest.
    """
    where = command_hint(error.ctx or ctx) if (error.ctx or ctx) else "--help"
    message = terminal_safe(error.format_message())
    line = click.ClickException(f"{message} (see: {where} --help)")
    line.exit_code = error.exit_code
    return line


class WholeNumber(click.ParamType):
    """A whole number option from ``low`` to ``high``, read by core.text's one integer parser:
    ASCII digits only ("١٧", "1_0" and "+3" are refused) and never past SQLite's integers."""

    name = "integer"

    def __init__(self, low: int = 0, high: int = MAX_ID):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            return whole_number(value, "the value", self.low, self.high)
        except InvalidInput as error:
            self.fail(str(error).replace("the value ", ""), param, ctx)


class Seconds(click.ParamType):
    """A number of seconds from ``low`` to ``high``: ASCII decimal, finite (no nan or inf)."""

    name = "seconds"

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            plain = isinstance(value, float | int) or (value.isascii() and "_" not in value)
            number = float(value) if plain else None  # float() takes "١٧" and "1_0" too
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"must be a number of seconds from {self.low:g} to {self.high:g}", param, ctx)
        return number


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


def a_path(ctx, param, value, what="a file"):
    """Take a file path option: empty or holding NUL, it names no file (one usage line)."""
    if value is not None and not value.strip():
        raise click.BadParameter(f"must name {what} (got an empty path)")
    if value is not None and "\x00" in value:  # no file system holds such a name
        raise click.BadParameter(f"must name {what} (got a path with a NUL byte)")
    return value


def remember_db(ctx, param, value):
    """Take ``--db`` before or after the subcommand; the later one wins."""
    if a_path(ctx, param, value, "a database file") is not None:
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
        type=Seconds(0.05, 3600),
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
    """Write the store's audit line (one JSON line per change) to stderr while a command runs,
    unless stderr is a terminal.

    A Kubernetes or Bacalhau job's log (or a redirect, or a pipe) then holds the same audit record
    the server logs; an operator at a terminal reads the command's own answer instead.
    """
    import contextlib
    import sys

    if sys.stderr is not None and sys.stderr.isatty():
        return contextlib.nullcontext()
    return logger_on_stderr("pipeline.audit")


def default_operator() -> str:
    """Return the OS user (containers may run under a uid with no name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def echo_json(value) -> None:
    """Print ``value`` as one line of strict JSON, with nothing a terminal acts on left raw."""
    click.echo(json_terminal_safe(json.dumps(value, ensure_ascii=False, allow_nan=False)))


def safe(value) -> str:
    return terminal_safe("?" if value is None else value)


def when_set(change) -> str:
    """Return when ``change`` was made: ISO 8601 UTC, else the stored text and *unknown time*."""
    return terminal_safe(shown(change.updated_at, change.updated_at_text))


def describe(change) -> str:
    """Return one terminal-safe line for a change: when, from → to, who, reason."""
    when = when_set(change)
    previous = safe(change.previous or "(default)")
    line = f"{when}  #{change.id}  {previous} → {safe(change.type_label)}"
    line += f" ({safe(change.bucket)})" if change.managed else ""
    line += f"  by {safe(change.updated_by)}"
    if change.source:
        line += f" via {safe(change.source)}"
    if change.reason:
        line += f": {safe(change.reason)}"
    return line
