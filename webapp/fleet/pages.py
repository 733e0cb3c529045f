"""The centre's pages: the fleet at a glance above its node table (filters in the URL, keyset
pages, live updates), and one node's page (its report, its history as reported, its timeline).

Registered as blueprint "dashboard", as the node's home is: the shared sign-in views
(web/auth.py) return to "dashboard.index" and count "dashboard.poll" as a page's own request.
Reads only, so forms are GET forms without a CSRF token; open unless
``PIPELINE_READ_REQUIRES_LOGIN=1`` (web/auth.py).
"""

from datetime import UTC, datetime

import htmx_flask
from flask import Blueprint, current_app, render_template, request, url_for

from webapp.accounts.users import name_problem
from webapp.core import timefmt
from webapp.core.config import buckets_from
from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.web.inputs import query_number
from webapp.web.render import render, set_navigation

from .filters import NodeFilter, name_cursor
from .mix import day_mix, kind_of, type_bars
from .nodes import NodePage
from .report import MAX_NODE_NAME
from .rollouts.tables import SYNC_STATES
from .schema import STATES

bp = Blueprint("dashboard", __name__)

PAGE_SIZE = 50
HISTORY_SIZE = 50
MIX_DAYS = 7


class UnknownNode(PipelineError):
    """No node of that name has reported (HTTP 404)."""

    http_status = 404


def get_store():
    from .db import get_store as store_of_this_app

    return store_of_this_app()


def poll_timing() -> dict:
    """Return how often pages poll, and when a poll counts as "not answering"."""
    poll = max(current_app.config["POLL_SECONDS"], 0.2)
    return {"poll_seconds": poll, "poll_timeout_ms": int(max(2.0, 2 * poll) * 1000)}


def table_request(args):
    """Return (filter, cursor, problem) from query ``args``; a bad value is one line."""
    try:
        return NodeFilter.from_args(args), name_cursor(args.get("after")), None
    except InvalidInput as error:
        return NodeFilter(), None, str(error)


def glance_context(store) -> dict:
    """Return what the fleet-at-a-glance fragment shows: bars, states, the 7-day mix."""
    summary = store.summary()
    by_type = {**summary["by_type"], **summary.get("unmanaged", {})}
    buckets = {}
    for pipeline_type, names in summary.get("buckets", {}).items():
        ranked = sorted(names.items(), key=lambda item: (-item[1], item[0]))
        buckets.setdefault(kind_of(pipeline_type), []).extend(name for name, _ in ranked)
    if not buckets:  # the store counts no buckets per type: name the fleet's configured ones
        buckets = {kind: [name] for kind, name in buckets_from(current_app.config).items()}
    mix = day_mix([(day.day, day.by_type) for day in store.mix(MIX_DAYS)])
    return {
        "summary": summary,
        "version": summary.get("version", 0),
        "type_bars": type_bars(by_type, buckets),
        "unmanaged_count": sum(summary.get("unmanaged", {}).values()),
        "mix": mix,
        "other_types": sorted(summary.get("unmanaged", {})),
    }


def table_context(store, args) -> dict:
    """Return what the node table fragment shows for query ``args``."""
    node_filter, after, problem = table_request(args)
    page = store.nodes(node_filter, PAGE_SIZE, after) if problem is None else NodePage([], None)
    filter_args = node_filter.to_args()
    return {
        "page": page,
        "rows": [table_row(node) for node in page.nodes],
        "filter_problem": problem,
        "filtered": bool(filter_args),
        "filter_args": filter_args,
        "first_page": after is None,
        "form": {name: args.get(name, "") for name in ("selector", "pipeline_type", "state")}
        | {"name_prefix": args.get("name_prefix", "")},
        "poll_url": url_for("dashboard.poll", **filter_args, **({"after": after} if after else {})),
    }


def table_row(node) -> dict:
    """Return one node as the table shows it."""
    since = timefmt.parse(node.since)
    return {
        "node": node,
        "kind": kind_of(node.pipeline_type),
        "type_label": node.pipeline_type or "(none reported)",
        "since": since,
        "since_text": node.since if since is None else None,
    }


def overview(store, args, status=200):
    """Render the overview page, or its table alone for an htmx request."""
    context = {**glance_context(store), **table_context(store, args), **poll_timing()}
    context.update(states=STATES, types=PIPELINE_TYPES, sync_states=SYNC_STATES)
    if context["filter_problem"]:
        status = 400
    return render("fleet/index.html", "fleet/_nodes.html", status, **context)


@bp.get("/")
def index():
    """Show the fleet at a glance and its nodes, filtered by labels, type, state and name."""
    return overview(get_store(), request.args)


@bp.get("/poll")
def poll():
    """Answer 204 while no node changed its pipeline, state or labels; else the fragments."""
    store = get_store()
    since = query_number("since")  # ASCII digits only: "١٧" is refused (400), not 17
    if since is not None and store.version() == since:
        return "", 204
    context = {**glance_context(store), **table_context(store, request.args)}
    context.update(states=STATES, types=PIPELINE_TYPES)
    by_state = context["summary"]["by_state"]
    context["announce"] = (
        f"Fleet updated: {context['summary']['nodes']} nodes, "
        f"{by_state.get('stale', 0)} stale, {by_state.get('error', 0)} in error"
    )
    return htmx_flask.make_response(render_template("fleet/_live.html", **context))


@bp.get("/nodes/<name>")
def node(name):
    """Show one node: its labels and report, its change history as reported, its timeline."""
    # Not a name a node may report under: asked of no store (PostgreSQL refuses a NUL in text).
    found = None if name_problem(name) or len(name) > MAX_NODE_NAME else get_store().node(name)
    if found is None:
        shown = name if len(name) <= MAX_NODE_NAME else name[:MAX_NODE_NAME] + "…"
        raise UnknownNode(f"no node called {shown!r} has reported to this centre")
    store = get_store()
    newest, older = store.changes(name, HISTORY_SIZE)
    shown, before = newest, request.args.get("before") or None
    if before is not None:
        try:
            shown, older = store.changes(name, HISTORY_SIZE, before)
        except InvalidInput:
            before = None  # not a cursor: the newest page
    return render_template(
        "fleet/node.html", **node_context(store, found, newest, shown, older, before)
    )


def node_context(store, found, newest, shown, older, before) -> dict:
    """Return what the node page shows, from the node and its newest and shown changes."""
    from .records import change_from_record, node_timelines

    recent = [change_from_record(change.record) for change in newest]
    current = change_from_record(found.record)
    if found.error and recent:
        current = recent[0]  # what it last reported, while its database cannot be read
    return {
        "node": found,
        "current": current,
        "history": merge_history(
            shown,
            [change_from_record(change.record) for change in shown],
            store.events(found.name),
            first_page=before is None,
            last_page=older is None,
        ),
        "older": older,
        "first_page": before is None,
        # The newest changes, however far back the page is: the timeline is of now.
        "timelines": node_timelines(recent, current, datetime.now(UTC)),
        "reported": True,
    }


def merge_history(changes, reported, events, first_page: bool, last_page: bool) -> list[dict]:
    """Return the page's changes with the events of its time span, newest first (changes by
    when the centre received them, events by when it noted them)."""
    entries = [
        {"at": raw.received_at, "change": change, "epoch": raw.epoch}
        for raw, change in zip(changes, reported, strict=True)
    ]
    newest = None if first_page or not entries else entries[0]["at"]
    oldest = None if last_page or not entries else entries[-1]["at"]
    for event in events:
        if (oldest is None or event.at >= oldest) and (newest is None or event.at < newest):
            entries.append({"at": event.at, "event": event})
    # Stable: a change received with the report that noted a restore stays above the note.
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return entries


def init_app(app) -> None:
    app.register_blueprint(bp)
    set_navigation(app, "Pipeline Manager · Fleet", [("dashboard.index", "Nodes")])
