"""The Flask factory: settings from ``PIPELINE_*`` variables, the secret-key policy, and one
``setup_*`` call per part of the web app (each imports its heavy parts lazily)."""

from webapp.web.factory import ConfigError, configured_app  # ConfigError: what callers catch

__all__ = ["ConfigError", "create_app"]


def create_app(test_config=None):
    """Build the app: settings from ``PIPELINE_*`` variables, then ``test_config``."""
    app = configured_app(test_config)
    setup_store(app)
    setup_cli(app)
    setup_web(app)
    setup_health(app)
    return app


def setup_store(app) -> None:
    """One store per worker thread; with no database named, the demo database exists from the
    app's start (so `flask ... user add`, the quick start's first command, makes it)."""
    from webapp.node import db

    if not app.config.get("DB"):
        from webapp.core import demo
        from webapp.core.config import EMBEDDED_DB

        demo.ensure(EMBEDDED_DB)
    db.init_app(app)


def setup_cli(app) -> None:
    from webapp.cli.pipeline import pipeline_cli
    from webapp.cli.user import user_cli

    app.cli.add_command(pipeline_cli)
    app.cli.add_command(user_cli)


def setup_web(app) -> None:
    """Register the dashboard, history, login, change flows and JSON API."""
    from htmx_flask import Htmx

    from webapp.node import api, change_flow, dashboard, history
    from webapp.web import auth, inputs, render, security

    Htmx(app)  # request.htmx: the HX-* request headers, parsed
    inputs.init_app(app)  # before the routes: they use its <int:...> converter
    security.init_app(app)
    auth.init_app(app)
    render.init_app(app)
    dashboard.init_app(app)
    history.init_app(app)
    change_flow.init_app(app)
    api.init_app(app)
    # Where a sign-in may lead back to: pages, never a fragment (/poll), an export or the API.
    auth.register_pages(
        app,
        "dashboard.index",
        "dashboard.timeline",
        "history.index",
        "changes.review",
        "changes.review_revert",
    )


def setup_health(app) -> None:
    """Register /healthz, /readyz (health.py) and /metrics (metrics.py)."""
    from webapp.node import health, metrics

    health.init_app(app)
    metrics.init_app(app)
