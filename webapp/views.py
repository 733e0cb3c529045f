"""Dashboard pages: the live overview, its poll, history with exports, and the timeline."""

import io
import json
from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, render_template, request

from .db import get_store
from .errors import InvalidInput, PipelineError
from .fragments import render, wants_fragment
from .pipelines import DESCRIPTIONS
from .warm import current_change

bp = Blueprint("dashboard", __name__)

RECENT = 10
PAGE_SIZE = 25
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
    store = get_store()
    who = current.updated_by or "an unknown operator"
    announce = f"Pipeline changed to {current.pipeline_type} by {who}"
    response = current_app.make_response(
        render_template("partials/_live.html", oob_live=True, **live_context(store, announce))
    )
    # app.js moves the change form's base version; the typed reason is left alone.
    response.headers["HX-Trigger"] = json.dumps({"pipeline-changed": {"id": current.version}})
    return response


def history_query():
    """Return (filter form, store filters) from the query string; bad values are dropped."""
    from .forms import HistoryFilterForm

    form = HistoryFilterForm(formdata=request.args)
    valid = form.validate()
    return form, (form.filters() if valid else {}), valid


@bp.get("/history")
def history():
    """List every change, newest first, filtered by type, operator and time range."""
    store = get_store()
    form, filters, valid = history_query()
    page = max(request.args.get("page", 1, type=int), 1)
    total = store.count(**filters)
    changes = store.history(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **filters)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    context = {
        "form": form,
        "changes": changes,
        "current": store.current(),
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "total": total,
        "args": args,
        "operators": store.users(),
    }
    return render("history.html", "partials/_history.html", 200 if valid else 400, **context)


@bp.get("/history.<any(csv, json):fmt>")
def export(fmt):
    """Download the filtered history as CSV or JSON (the CLI's records)."""
    store = get_store()
    form, filters, valid = history_query()
    if not valid:
        raise InvalidInput("invalid filter: " + "; ".join(map(str, form.errors.values())))
    changes = store.history(limit=max(store.count(**filters), 1), **filters)
    if fmt == "json":
        body, mimetype = json.dumps([c.to_dict() for c in changes], ensure_ascii=False), "json"
    else:
        from .cli import write_csv

        buffer = io.StringIO()
        write_csv(changes, buffer)
        body, mimetype = buffer.getvalue(), "csv"
    response = current_app.response_class(body, mimetype=f"application/{mimetype}")
    if fmt == "csv":
        response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = f"attachment; filename=pipeline-history.{fmt}"
    return response


@bp.get("/timeline")
def timeline():
    """Show which pipeline was active over the last 24 hours and 7 days."""
    from .timeline import timelines

    store = get_store()
    context = {"timelines": timelines(store, datetime.now(UTC)), "current": store.current()}
    return render("timeline.html", "partials/_timeline.html", **context)


def pipeline_error(error: PipelineError):
    """Show an error an operator can act on: one line, no traceback."""
    status = error.http_status
    if wants_fragment():
        return render_template("partials/_error.html", message=str(error)), status
    return render_template("error.html", message=str(error)), status


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
    from . import warm
    from .timefmt import ago, iso

    warm.init_app(app)
    app.register_blueprint(bp)
    app.context_processor(page_globals)
    app.register_error_handler(PipelineError, pipeline_error)
    app.jinja_env.filters.update(ago=ago, iso=iso)
