"""``flask --app webapp.fleet fleet demo``: the fleet centre with simulated nodes, one command.

The centre runs on an embedded SQLite store in a temporary folder, served on 127.0.0.1 only;
the nodes are real node databases beside it, each reported by the real notifier (demo_nodes.py).
Everything is removed when the demo stops (unless ``--keep``).
"""

import logging
import math
import secrets
import shutil
import socket
import tempfile
import threading
import time

import click

from webapp.cli.support import reports_errors
from webapp.core.errors import InvalidInput, PipelineError

HOST = "127.0.0.1"  # a demo: never on a public interface
FIRST_REPORTS_S = 30.0  # how long the nodes' first reports may take before the demo gives up


class WholeNumber(click.IntRange):
    """``click.IntRange`` of ASCII digits only: ``int()`` would also read "٣" or "³" as 3."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip().lstrip("+-").isascii():
            self.fail(f"{value!r} is not a whole number in ASCII digits", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.FloatRange):
    """``click.FloatRange`` without NaN and infinities (a range check lets NaN through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


@click.command("demo")
@click.option("--nodes", "count", type=WholeNumber(1, 200), default=20, show_default=True,
              help="How many simulated nodes report.")  # fmt: skip
@click.option("--port", type=WholeNumber(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")  # fmt: skip
@click.option("--heartbeat", type=WholeNumber(5, 3600), default=10, show_default=True,
              help="Seconds between a quiet node's reports (stale after 3 of them).")  # fmt: skip
@click.option("--change-every", type=Seconds(0.5, 3600), default=8.0, show_default=True,
              help="Seconds between two simulated pipeline changes.")  # fmt: skip
@click.option("--seconds", type=Seconds(1, 10**7), default=None,
              help="Stop after this long (default: run until Ctrl-C).")  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the temporary folder (databases, store).")
@reports_errors
def demo(count, port, heartbeat, change_every, seconds, keep):
    """Run the fleet centre with simulated nodes reporting to it.

    Real node databases in a temporary folder, each watched by the real notifier, which signs
    its reports with the node's key and posts them to the centre; operators change pipelines
    every few seconds; one node falls silent (stale) and one node's database breaks (error);
    labels region and site. Open the printed URL; Ctrl-C stops and removes everything.

    \b
    Example:
      flask --app webapp.fleet fleet demo --nodes 20
      flask --app webapp.fleet fleet demo --nodes 50 --port 0 --heartbeat 5
    """
    from werkzeug.serving import make_server

    from .demo_nodes import DemoFleet

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per report
    folder = tempfile.mkdtemp(prefix="fleet-demo-")
    fleet = server = None
    try:
        secret = secrets.token_urlsafe(32)
        app = demo_app(folder, secret)
        check_port(port)
        server = make_server(HOST, port, app, threaded=True)
        url = f"http://{HOST}:{server.server_port}"
        threading.Thread(target=server.serve_forever, name="centre", daemon=True).start()
        fleet = DemoFleet(folder, count, url, secret, heartbeat)
        fleet.seed_history()
        fleet.start()
        wait_for_first_reports(app, count)
        fleet.quieten_and_break()
        click.echo(f"Fleet centre demo: {url}  ({count} nodes reporting; Ctrl-C stops)")
        click.echo(f"Node databases and the centre's store: {folder}")
        if fleet.stale is not None:
            click.echo(
                f"{fleet.stale.name} stopped reporting (stale in {3 * heartbeat} s); "
                f"{fleet.broken.name}'s database was replaced by a file that is not one (error)"
            )
        simulate(fleet, change_every, seconds)
    finally:
        if fleet is not None:
            fleet.stop()
        if server is not None:
            server.shutdown()
        if keep:
            click.echo(f"Kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def check_port(port: int) -> None:
    """Refuse a port in use in one line (werkzeug would print its own lines and exit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            message = f"cannot listen on {HOST}:{port} ({error.strerror}): try --port 0"
            raise PipelineError(message) from None


def demo_app(folder: str, secret: str):
    """Return the centre's app on a store in ``folder``, with ``secret`` for the node keys."""
    from . import create_app

    return create_app(
        {
            "FLEET_DB": f"{folder}/fleet.db",
            "FLEET_SECRET": secret,
            "SECRET_KEY": secrets.token_hex(32),
            "STATE_DIR": f"{folder}/state",
            "USERS_FILE": None,  # read-only: nobody signs in to a demo
            "READ_REQUIRES_LOGIN": False,
            "POLL_SECONDS": 2.0,
        }
    )


def wait_for_first_reports(app, count: int) -> None:
    """Return once every node has reported (the store says so), or fail in one line."""
    from .db import get_store

    deadline = time.monotonic() + FIRST_REPORTS_S
    with app.app_context():
        store = get_store()
        while store.summary()["nodes"] < count:
            if time.monotonic() > deadline:
                raise InvalidInput(
                    f"only {store.summary()['nodes']} of {count} nodes reported within "
                    f"{FIRST_REPORTS_S:g} s"
                )
            time.sleep(0.2)  # polling the store: the reports arrive on other threads


def simulate(fleet, change_every: float, seconds: float | None) -> None:
    """Change a pipeline every ``change_every`` seconds until Ctrl-C or ``seconds`` have passed."""
    stop_at = None if seconds is None else time.monotonic() + seconds
    try:
        while stop_at is None or time.monotonic() < stop_at:
            left = (
                change_every if stop_at is None else min(change_every, stop_at - time.monotonic())
            )
            time.sleep(max(left, 0))
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            node, pipeline_type, who = fleet.change_one()
            click.echo(f"{who} set {node} to {pipeline_type}")
    except KeyboardInterrupt:
        click.echo("Stopping the demo")
