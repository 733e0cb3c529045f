"""The centre's JSON API (the node API's conventions: ``{"error": ...}`` with the status, HTTP
Basic when ``PIPELINE_READ_REQUIRES_LOGIN=1``, keyset pages with ``limit`` ≤ 500 and a
``before`` cursor), and the node table's streamed CSV and JSON exports."""

import csv
import io
import json

from flask import Blueprint, Response, request, stream_with_context

from webapp.core.errors import PipelineError
from webapp.core.export import cell
from webapp.web.jsonapi import answer_errors_as_json, register_http_errors, require_basic_to_read

from .db import get_store
from .filters import NodeFilter, name_cursor, page_size

bp = Blueprint("api", __name__, url_prefix="/api/fleet")
answer_errors_as_json(bp)
bp.before_request(require_basic_to_read)

CSV_FIELDS = (
    "node",
    "state",
    "pipeline_type",
    "bucket",
    "managed",
    "since",
    "updated_by",
    "reason",
    "last_report_at",
    "interval_s",
    "agent",
    "labels",
)
CHUNK = 200


class NotFound(PipelineError):
    http_status = 404


@bp.get("/nodes")
def list_nodes():
    """Return nodes in name order, filtered, ``limit`` at a time after the ``before`` cursor."""
    node_filter = NodeFilter.from_args(request.args)
    limit = page_size(request.args.get("limit"))
    page = get_store().nodes(node_filter, limit, name_cursor(request.args.get("before")))
    return {"nodes": [node.to_dict() for node in page.nodes], "next_before": page.next_cursor}


@bp.get("/nodes/<name>")
def get_node(name):
    """Return one node with its changes as reported, newest first (and its restores)."""
    store = get_store()
    node = store.node(name)
    if node is None:
        raise NotFound(f"no node named {name!r} has reported")
    limit = page_size(request.args.get("limit"))
    changes, older = store.changes(name, limit, request.args.get("before") or None)
    return {
        **node.to_dict(),
        "changes": [change.to_dict() for change in changes],
        "next_before": older,
        "events": [event.to_dict() for event in store.events(name)],
    }


@bp.get("/summary")
def summary():
    """Return the fleet's counts: nodes, by type, by state, by label."""
    return get_store().summary()


@bp.get("/nodes.csv")
def export_csv():
    """Stream the (filtered) node table as CSV, cells a spreadsheet would run neutralised."""
    nodes = get_store().iter_nodes(NodeFilter.from_args(request.args))
    return download(csv_chunks(nodes), "text/csv", "fleet-nodes.csv")


@bp.get("/nodes.json")
def export_json():
    """Stream the (filtered) node table as a JSON array of node objects."""
    nodes = get_store().iter_nodes(NodeFilter.from_args(request.args))
    return download(json_chunks(nodes), "application/json", "fleet-nodes.json")


def download(chunks, mimetype: str, filename: str) -> Response:
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_row(node) -> list:
    labels = ",".join(f"{key}={value}" for key, value in node.labels.items())
    values = (
        node.name,
        node.state,
        node.pipeline_type,
        node.bucket,
        "true" if node.managed else "false",
        node.since,
        node.updated_by,
        node.reason,
        node.to_dict()["last_report_at"],
        node.interval_s,
        node.agent,
        labels,
    )
    return [cell(value) for value in values]


def csv_chunks(nodes):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for count, node in enumerate(nodes, 1):
        writer.writerow(csv_row(node))
        if count % CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(nodes):
    yield "["
    for count, node in enumerate(nodes):
        yield ("," if count else "") + json.dumps(node.to_dict(), ensure_ascii=False)
    yield "]"


def init_app(app) -> None:
    register_http_errors(app)
    app.register_blueprint(bp)
