"""Dashboard pages: the live overview and its poll; error pages. (History: history.py.)"""

from datetime import UTC, datetime

import htmx_flask
from flask import Blueprint, abort, current_app, render_template, request

from .db import get_store
from .errors import PipelineError
from .fragments import render, wants_fragment
from .pipelines import DESCRIPTIONS
from .warm import current_change

bp = Blueprint("dashboard", __name__)

RECENT = 10
HTMX_FILE = "htmx-2.0.11.min.js"
# htmx reads this from <meta name="htmx-config">: no eval, no inline styles or scripts (CSP).
# Refusals the operator must read (400 invalid, 403, 409 conflict, 422 form errors, 503 busy)
# are swapped in like any answer; other failures stay errors, which app.js reports as offline.
HTMX_CONFIG = {
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "selfRequestsOnly": True,
    "historyCacheSize": 0,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "(400|403|409|422|429|503)", "swap": True, "error": False},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}


@bp.before_app_request
def refuse_without_secret():
    """Serve nothing when started by `flask run` without PIPELINE_SECRET_KEY outside development."""
    if current_app.config.get("MISSING_SECRET_KEY"):
        abort(503, "PIPELINE_SECRET_KEY is not set: refusing to serve outside development")


def live_context(store, announce=None) -> dict:
    """Return what the live fragments (current, buckets, recent, timeline) show."""
    from .timeline import timelines

    current = store.current()
    return {
        "current": current,
        "buckets": current_app.config["BUCKETS"],
        "recent": store.history(limit=RECENT),
        "timelines": timelines(store, datetime.now(UTC)),
        "announce": announce,
        "in_dashboard": True,
    }


def dashboard(store, status=200, **panel):
    """Render the dashboard page, or only its change panel (plus live fragments) for htmx."""
    from .forms import ChangeForm

    context = live_context(store, panel.pop("announce", None))
    if "form" not in panel:
        panel["form"] = ChangeForm(formdata=None, expect_id=context["current"].version)
    poll = max(current_app.config["POLL_SECONDS"], 0.2)
    # A poll slower than two intervals counts as "not answering".
    context.update(panel, poll_seconds=poll, poll_timeout_ms=int(max(2.0, 2 * poll) * 1000))
    context.setdefault("step", "form")
    return render("index.html", "partials/_panel.html", status, oob_live=True, **context)


@bp.get("/")
def index():
    """Show the current pipeline, the buckets, the change form and the recent changes."""
    return dashboard(get_store())


@bp.get("/poll")
def poll():
    """Answer 204 while the newest change is still ``since``; else the updated fragments."""
    since = request.args.get("since", type=int)
    current = current_change()
    if since is not None and current.version == since:
        return "", 204
    context = live_context(get_store())
    current = context["current"]  # what the fragments show, even if yet another change landed
    who = current.updated_by or "an unknown operator"
    context["announce"] = f"Pipeline changed to {current.pipeline_type} by {who}"
    # The trigger makes app.js move the change form's base version; the typed reason stays.
    return htmx_flask.make_response(
        render_template("partials/_live.html", oob_live=True, **context),
        trigger={"pipeline-changed": {"id": current.version}},
    )


def show_error(message: str, status: int):
    if wants_fragment():
        return render_template("partials/_error.html", message=message), status
    return render_template("error.html", message=message), status


def pipeline_error(error: PipelineError):
    """Show an error an operator can act on: one line, no traceback."""
    return show_error(str(error), error.http_status)


def bad_request(error):
    """Explain a refused request (most often a missing or expired CSRF token) in one line."""
    return show_error(f"{error.description} Reload the page and try again.", 400)


def page_globals() -> dict:
    """Return what base.html needs on every page."""
    config = current_app.config
    users_file = config.get("USERS_FILE") or "instance/users.htpasswd"
    command = f"flask --app webapp user add NAME --users-file {users_file}"
    if not config.get("USERS_FILE"):
        command += f"\nexport PIPELINE_USERS_FILE={users_file}  # then restart the dashboard"
    return {
        "descriptions": DESCRIPTIONS,
        "htmx_file": HTMX_FILE,
        "htmx_config": HTMX_CONFIG,
        "add_user_command": command,
    }


def init_app(app) -> None:
    from . import history, warm  # noqa: F401 (history adds its routes to bp)
    from .timefmt import ago, iso

    warm.init_app(app)
    app.register_blueprint(bp)
    app.context_processor(page_globals)
    app.register_error_handler(PipelineError, pipeline_error)
    app.register_error_handler(400, bad_request)
    app.jinja_env.filters.update(ago=ago, iso=iso)
