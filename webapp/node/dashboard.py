"""The dashboard: the live overview, its poll, and the timeline page."""

import os
import socket
from datetime import UTC, datetime

import htmx_flask
from flask import Blueprint, current_app, render_template, url_for

from webapp.node.db import get_store
from webapp.web.inputs import query_number
from webapp.web.render import render, set_navigation, wants_fragment

bp = Blueprint("dashboard", __name__)

RECENT = 10


def live_context(store, announce=None) -> dict:
    """Return what the live fragments (current, buckets, recent, timeline) show."""
    from webapp.core.timeline import timelines

    current = store.current()
    return {
        "current": current,
        "buckets": store.buckets,
        "recent": store.history(RECENT),
        "timelines": timelines(store, datetime.now(UTC), current),
        "announce": announce,
        "in_dashboard": True,
    }


def where(store) -> dict:
    """Return what the dashboard names so nobody mistakes one node for another: the host, the
    database it shows, and why /readyz would refuse traffic (None when ready)."""
    from webapp.node.health import readiness

    return {
        "host": socket.gethostname(),
        "database": os.fspath(store.path),
        "not_ready": readiness(store)[0],
    }


def dashboard(store, status=200, **panel):
    """Render the dashboard page, or only its change panel (plus live fragments) for htmx."""
    from webapp.node.forms import ChangeForm

    context = live_context(store, panel.pop("announce", None))
    if not wants_fragment():
        context.update(where(store))
    current = context["current"]
    if "form" not in panel:
        panel["form"] = ChangeForm(formdata=None, expect_id=current.version, current=current)
    panel.setdefault("back", url_for("dashboard.index"))
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
    since = query_number("since")  # ASCII digits only: "١٧" is refused (400), not 17
    store = get_store()
    current = store.current()
    if since is not None and current.version == since:
        return "", 204
    context = live_context(store)
    current = context["current"]  # what the fragments show, even if yet another change landed
    who = current.updated_by or "an unknown operator"
    context["announce"] = f"Pipeline changed to {current.type_label} by {who}"
    # The trigger makes app.js move the change form's base version and its "(current)" mark;
    # the choice and the typed reason stay.
    from webapp.node.forms import type_mark

    changed = {
        "id": current.version,
        "type": current.pipeline_type if current.managed else None,
        "mark": type_mark(current),  # the words the form uses: "(current)", or never set
    }
    return htmx_flask.make_response(
        render_template("partials/_live.html", oob_live=True, **context),
        trigger={"pipeline-changed": changed},
    )


@bp.get("/timeline")
def timeline():
    """Show which pipeline was active over the last hour, 24 hours and 7 days."""
    from webapp.core.timeline import timelines

    store = get_store()
    current = store.current()
    context = {"timelines": timelines(store, datetime.now(UTC), current), "current": current}
    # The page's own h1 names it: the fragment's heading would repeat it.
    return render("timeline.html", "partials/_timeline.html", standalone=True, **context)


def init_app(app) -> None:
    app.register_blueprint(bp)
    links = (("dashboard.index", "Dashboard"), ("history.index", "History"))
    set_navigation(app, "Pipeline Manager", (*links, ("dashboard.timeline", "Timeline")))
