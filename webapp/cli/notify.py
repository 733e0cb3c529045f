"""The ``notify`` command: post every change to webhooks and report to a fleet centre (the
work is :mod:`webapp.notify`; this checks the options, opens the state and starts it)."""

import functools

import click

from webapp.cli.support import (
    Seconds,
    WholeNumber,
    a_path,
    db_option,
    fleet_options,
    interval_option,
    open_store,
    reports_errors,
    settings,
)


@click.command("notify")
@db_option
@click.option(
    "--webhook",
    "webhook_urls",
    multiple=True,
    metavar="URL",
    help="POST each change to URL (repeatable; standard+URL signs it the Standard Webhooks "
    "way). Default: $PIPELINE_WEBHOOKS (comma-separated).",
)
@interval_option("Seconds between checks of the database.")
@click.option(
    "--state",
    "state_path",
    metavar="PATH",
    callback=a_path,
    help="Where each webhook's last acknowledged change is kept. "
    "Default: pipeline-notify-state.json beside the database.",
)
@click.option(
    "--from-id",
    type=WholeNumber(0),
    metavar="N",
    help="A webhook with no state yet gets every change after N (default: only new changes).",
)
@click.option(
    "--metrics-port",
    type=WholeNumber(1, 65535),
    metavar="PORT",
    help="Serve Prometheus /metrics and /healthz on PORT (all interfaces).",
)
@click.option(
    "--metrics-file",
    metavar="PATH",
    callback=a_path,
    help="Write the metrics to PATH (node_exporter's textfile collector).",
)
@click.option(
    "--max-backoff",
    type=Seconds(0.1, 3600),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait, in seconds, between two attempts to post one change.",
)
@fleet_options
@click.pass_context
@reports_errors
def notify_command(
    ctx,
    webhook_urls,
    interval,
    state_path,
    from_id,
    metrics_port,
    metrics_file,
    max_backoff,
    **fleet,
):
    """Post every pipeline change to webhooks, and report to a fleet centre, in order, at least
    once (SIGTERM stops).

    \b
    Examples:
      pipeline-manager --db /data/sensor_data.db notify --webhook https://hooks.example.org/x
      PIPELINE_FLEET_KEY_FILE=/run/secrets/fleet-key pipeline-manager --db /data/sensor_data.db \\
        notify --fleet https://fleet.example.org --node edge-001 --label region=eu
    """
    # Imported here: the other commands start fast on small boards without them.
    from webapp.core.config import webhook_secret
    from webapp.core.files import check_replaceable
    from webapp.notify.fleet import fleet_target
    from webapp.notify.notifier import Notifier, check_from_id
    from webapp.notify.service import logging_to_stderr, serve
    from webapp.notify.signing import check_key
    from webapp.notify.state import NotifyState, default_path
    from webapp.notify.webhooks import parse_webhooks, split_setting

    config = settings(ctx)
    hooks = parse_webhooks(webhook_urls or split_setting(config.get("WEBHOOKS")))
    secret = webhook_secret(config)
    check_key(hooks, secret)
    fleet = fleet_target(config, **fleet)
    # Usable now, before a state, lock or metrics file is made (each thread opens its own).
    with open_store(ctx) as store:
        newest, database = store.current().version, store.path
    check_from_id(from_id, newest)
    if metrics_file is not None:
        check_replaceable(metrics_file, "metrics file")  # before the state's lock file is made
    state = NotifyState.open(state_path or default_path(database))
    notifier = Notifier(
        functools.partial(open_store, ctx),
        hooks,
        state,
        secret=secret,
        interval=interval,
        from_id=from_id,
        max_backoff=max_backoff,
        fleet=fleet,
    )
    with logging_to_stderr():
        serve(notifier, metrics_port=metrics_port, metrics_file=metrics_file)
