"""History pages: every change with filters and exports, and the timeline (dashboard routes)."""

import io
import json
from datetime import UTC, datetime

from flask import current_app, request

from .db import get_store
from .errors import InvalidInput
from .export import write_csv
from .fragments import render
from .views import bp

PAGE_SIZE = 25


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
    changes = store.history(limit=None, **filters)
    if fmt == "json":
        body = json.dumps([c.to_dict() for c in changes], ensure_ascii=False)
        mimetype = "application/json"
    else:
        buffer = io.StringIO()
        write_csv(changes, buffer)
        body, mimetype = buffer.getvalue(), "text/csv"
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename=pipeline-history.{fmt}"
    return response


@bp.get("/timeline")
def timeline():
    """Show which pipeline was active over the last 24 hours and 7 days."""
    from .timeline import timelines

    store = get_store()
    context = {"timelines": timelines(store, datetime.now(UTC)), "current": store.current()}
    return render("timeline.html", "partials/_timeline.html", **context)
