"""History: every change, filtered and paged by keyset (cost flat in history size), and its
streamed exports."""

import itertools

from flask import Blueprint, current_app, request, stream_with_context, url_for

from webapp.core.errors import InvalidInput
from webapp.core.export import csv_chunks, json_chunks
from webapp.core.queries import SCAN_BOUND
from webapp.node.db import get_store
from webapp.web.render import render

bp = Blueprint("history", __name__)

PAGE_SIZE = 25
COUNT_UP_TO = 1000  # a full count is a scan: more than this is shown as "more than 1000"
FILTERS = ("pipeline_type", "operator", "since", "until")


def history_query(args):
    """Return (filter form, store filters, valid) from query ``args``; bad values are dropped."""
    from webapp.node.forms import HistoryFilterForm

    form = HistoryFilterForm(formdata=args)
    valid = form.validate()
    return form, (form.filters() if valid else {}), valid


def operator_choices(store) -> list[tuple[str, str]]:
    """Return the (value, label) of each stored operator name, for the filter's list."""
    from webapp.node.forms import operator_choice

    return [operator_choice(stored) for stored in store.operators(stored=True)]


def history_url(args) -> str:
    """Return /history with the filters of ``args`` (newest page first: no cursor)."""
    return url_for("history.index", **{name: args[name] for name in FILTERS if args.get(name)})


def history_page(store, args, status=200, **panel):
    """Render /history for query ``args``, with a change panel (a revert step) when given."""
    form, filters, valid = history_query(args)
    cursors = form.cursors() if valid else {}
    page = store.page(PAGE_SIZE, **cursors, **filters)
    context = {
        "filter_form": form,
        "changes": page.changes,
        "older": page.older,
        "newer": page.newer,
        "first_page": not cursors,
        "current": store.current(),
        "total": store.count(COUNT_UP_TO, **filters),
        "count_limit": COUNT_UP_TO,
        "args": {k: v for k, v in args.items() if k not in ("before", "after") and v},
        "here": history_url(args),  # where a revert started here comes back to
        "operators": operator_choices(store),
        # A table another tool made, without our indexes: say what was searched, and the fix.
        "scan_bound": store.scan_floor() is not None and SCAN_BOUND,
        "database": store.path,
        "buckets": store.buckets,
        "show_panel": bool(panel),
    }
    if not valid and not panel:
        status = 400
    return render("history.html", "partials/_history.html", status, **context, **panel)


@bp.get("/history")
def index():
    """List every change, newest first, filtered by type, operator and time range."""
    return history_page(get_store(), request.args)


@bp.get("/history.<any(csv, json):fmt>")
def export(fmt):
    """Download the filtered history as CSV or JSON (the CLI's records), streamed."""
    store = get_store()
    form, filters, valid = history_query(request.args)
    if not valid:
        raise InvalidInput("invalid filter: " + "; ".join(map(str, form.errors.values())))
    rows = store.iter_rows(**filters)
    chunks = json_chunks(rows, store.buckets) if fmt == "json" else csv_chunks(rows, store.buckets)
    # The first chunk is read here: a database that cannot be read still answers with its
    # status (503) instead of a 200 that stops short.
    chunks = itertools.chain([next(chunks)], chunks)
    mimetype = "application/json" if fmt == "json" else "text/csv"
    response = current_app.response_class(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename=pipeline-history.{fmt}"
    return response


def init_app(app) -> None:
    app.register_blueprint(bp)
