"""The fleet centre's Flask factory: the node app's shared start-up (settings, secret key, proxy,
security headers, CSRF, sign-in), then the centre's own parts: ingest, API, pages, probes,
metrics and the ``fleet`` commands. It never opens a sensor database."""

import click

from webapp.accounts.keys import key_file_problem, key_problem, refusal
from webapp.core.config import fleet_secret
from webapp.core.errors import InvalidInput
from webapp.web.factory import ConfigError, configured_app, is_development

__all__ = ["ConfigError", "create_app"]


def create_app(test_config=None):
    """Build the centre: settings from ``PIPELINE_*`` variables, then ``test_config``."""
    app = configured_app(test_config)
    setup_fleet_secret(app)
    setup_cli(app)
    setup_web(app)
    setup_health(app)
    return app


def setup_fleet_secret(app) -> None:
    """Read the fleet secret (PIPELINE_FLEET_SECRET or _FILE) under the secret-key rules.

    Unset, the centre serves its pages and refuses every report (503): it cannot tell a node's
    key from a forgery. A weak one stops a server's start, as a weak session key does.
    """
    try:
        secret = fleet_secret(app.config)
    except InvalidInput as error:
        raise fail(app, str(error)) from None
    source = (
        "PIPELINE_FLEET_SECRET"
        if app.config.get("FLEET_SECRET")
        else f"PIPELINE_FLEET_SECRET_FILE ({app.config.get('FLEET_SECRET_FILE')})"
    )
    app.config["FLEET_SECRET"] = secret
    problem = None if (app.testing or not secret) else key_problem(secret, source, False)
    if secret and not app.testing and source.startswith("PIPELINE_FLEET_SECRET_FILE"):
        problem = key_file_problem(app.config["FLEET_SECRET_FILE"]) or problem  # others may read it
    if problem:
        app.config["FLEET_SECRET"] = None  # never derive node keys from a guessable secret
        if click.get_current_context(silent=True) is None:
            raise ConfigError(refusal(problem))
        app.config["FLEET_SECRET_PROBLEM"] = refusal(problem, "accept reports")
    elif not secret and not is_development(app):
        app.logger.warning("PIPELINE_FLEET_SECRET is not set: every report is refused until it is")


def fail(app, message: str):
    """Return what stops the start: ConfigError for a server, one Error: line under the CLI."""
    if click.get_current_context(silent=True) is None:
        return ConfigError(message)
    from webapp.cli.support import click_error

    return click_error(InvalidInput(message))


def setup_cli(app) -> None:
    from webapp.cli.user import user_cli

    from .commands import fleet_cli

    app.cli.add_command(fleet_cli)
    app.cli.add_command(user_cli)


def setup_web(app) -> None:
    """Register sign-in, the pages, ingest and the JSON API (the node app's shared parts)."""
    from htmx_flask import Htmx

    from webapp.web import auth, inputs, render, security

    from . import api, ingest, pages
    from .rollouts import api as rollouts_api
    from .rollouts import pages as rollouts_pages

    Htmx(app)
    inputs.init_app(app)  # undecodable query strings and bodies refused, one integer converter
    security.init_app(app)
    auth.init_app(app)
    render.init_app(app)
    pages.init_app(app)
    rollouts_pages.init_app(app)  # after pages: it adds "Rollouts" to their navigation
    ingest.init_app(app)
    api.init_app(app)
    rollouts_api.init_app(app)
    # Where a sign-in may lead back to: pages, never a fragment, an export or the API.
    auth.register_pages(app, "dashboard.index", "dashboard.node", "rollouts.index", "rollouts.page")


def setup_health(app) -> None:
    """Register /healthz, /readyz and /metrics."""
    from . import health, metrics

    health.init_app(app)
    metrics.init_app(app)
