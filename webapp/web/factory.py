"""What every Flask app of the tool shares at start: its settings from ``PIPELINE_*`` variables,
the secret-key policy and the trusted-proxy rule (the node's dashboard and the fleet centre alike).
"""

import os
import secrets

import click
from flask import Flask

from webapp.accounts.keys import configured_key_problem, refusal
from webapp.core.config import ROOT, load_settings
from webapp.core.errors import InvalidInput


def new_app(import_name: str = "webapp") -> Flask:
    """Return a bare Flask app on the checkout's instance/, templates/ and static/ folders."""
    return Flask(
        import_name,
        instance_path=os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )


class ConfigError(RuntimeError):
    """The app cannot start safely with this configuration."""


def settings_from_environment() -> dict:
    """Return the ``PIPELINE_*`` settings; a bad value is one ``Error:`` line under the CLI."""
    try:
        return load_settings(os.environ)
    except InvalidInput as error:
        if click.get_current_context(silent=True) is None:
            raise ConfigError(str(error)) from None  # gunicorn: refuse to boot, say why
        from webapp.cli.support import click_error

        raise click_error(error) from None  # flask CLI: one line, never a traceback


def is_development(app) -> bool:
    return app.debug or app.testing or app.config.get("ENV") == "development"


def setup_secret_key(app) -> None:
    """Require a strong PIPELINE_SECRET_KEY; only development may go without one.

    Several gunicorn workers must share one key, or sessions and CSRF tokens signed by one worker
    fail in another; a per-process random key is only acceptable in development (and
    gunicorn.conf.py runs development with one worker). Test configurations choose their own key.
    """
    key = app.config.get("SECRET_KEY")
    problem = None if app.testing else configured_key_problem(app.config, is_development(app))
    if not key:
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    if problem is None:
        return
    if click.get_current_context(silent=True) is None:
        # Imported by a WSGI server: refuse to start (gunicorn.conf.py says it first, in one line).
        raise ConfigError(refusal(problem))
    # Under the flask CLI: `flask pipeline ...` needs no key, but `flask run` must not serve.
    app.config["SECRET_KEY"] = secrets.token_hex(32)  # never sign with the weak one
    app.config["SECRET_KEY_PROBLEM"] = refusal(problem, "serve")


def setup_proxy(app) -> None:
    """Trust PIPELINE_PROXY_COUNT proxies' X-Forwarded-For/-Proto/-Host (0: trust none)."""
    proxies = int(app.config.get("PROXY_COUNT") or 0)
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Each proxy appends the address it saw: the last N entries are the ones our proxies
        # wrote, anything before them came from the client and could be forged.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    else:
        app.before_request(lambda: warn_of_an_unannounced_proxy(app))


def warn_of_an_unannounced_proxy(app) -> None:
    """Log once when X-Forwarded-For arrives but no proxy is trusted: behind a proxy, every
    client would share its address, and a spray from one would make all of them wait."""
    from flask import request

    if "X-Forwarded-For" in request.headers and "pipeline.proxy_warned" not in app.extensions:
        app.extensions["pipeline.proxy_warned"] = True
        app.logger.warning(
            "requests carry X-Forwarded-For, ignored since PIPELINE_PROXY_COUNT=0: clients are "
            "counted by the connection's address (%s); behind a proxy, set PIPELINE_PROXY_COUNT",
            request.remote_addr,
        )


def configured_app(test_config=None) -> Flask:
    """Return an app with what every app here starts with: settings from ``PIPELINE_*``
    variables (then ``test_config``), the secret-key policy and the trusted-proxy rule."""
    app = new_app()
    app.config.update(settings_from_environment())
    if test_config:
        app.config.update(test_config)
    setup_secret_key(app)
    setup_proxy(app)
    return app
