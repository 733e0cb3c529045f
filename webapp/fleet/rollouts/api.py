"""``/api/fleet/rollouts``: create, list and read rollouts; act on one with its version.

The node API's conventions: HTTP Basic for every write (the operator is the one the credentials
name, never one the body names), ``{"error": ...}`` with the status, ETag and ``If-Match`` for
compare-and-set (required on actions: 428 without it, 412 with a stale one, saying who acted
meanwhile). Blueprint "fleet_rollouts_api": exempt from the pages' CSRF check, as "api" is.
"""

from flask import Blueprint, current_app, jsonify, request

from webapp.core.errors import InvalidInput, PipelineError
from webapp.core.text import clean_text, whole_number
from webapp.web.jsonapi import answer_errors_as_json, basic_operator, require_basic_to_read

from .actions import StaleVersion
from .plan import read_names, read_new_rollout
from .service import rollout_store
from .support import node_row, node_rows_request, whole_arg

bp = Blueprint("fleet_rollouts_api", __name__, url_prefix="/api/fleet/rollouts")
answer_errors_as_json(bp)
bp.before_request(require_basic_to_read)

MAX_BODY = 64 * 1024
MAX_ID = 2**31 - 1


class PreconditionRequired(PipelineError):
    http_status = 428


class PreconditionFailed(PipelineError):
    http_status = 412


def json_body(required: bool = True) -> dict:
    """Return the request's JSON object (an empty one when none was sent and none is needed)."""
    if not request.get_data(cache=True) and not required:
        return {}
    if not request.is_json:
        raise InvalidInput("send Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def if_match() -> int:
    """Return the version If-Match names; 428 without one (actions must say what they saw)."""
    header = request.headers.get("If-Match")
    if header is None:
        raise PreconditionRequired(
            'send If-Match with the rollout\'s ETag (its "version"), e.g. If-Match: "3"'
        )
    value = header.strip().removeprefix("W/").strip('"')
    try:
        return whole_number(value, "If-Match", 0, 999_999_999)
    except InvalidInput:
        raise InvalidInput('If-Match must be the rollout\'s ETag, e.g. "3"') from None


def with_etag(rollout, status: int = 200):
    response = jsonify(rollout.to_dict())
    response.status_code = status
    response.headers["ETag"] = rollout.etag
    return response


@bp.get("")
def list_rollouts():
    """Return rollouts newest first (``limit`` ≤ 100, ``before`` an id)."""
    limit = whole_arg(request.args.get("limit"), "limit", 1, 100, 50)
    before = whole_arg(request.args.get("before"), "before", 1, MAX_ID, None)
    found = rollout_store().list(limit, before)
    return {
        "rollouts": [r.to_dict() for r in found],
        "next_before": found[-1].id if len(found) == limit else None,
    }


@bp.post("")
def create_rollout():
    """Create a rollout as the authenticated operator; 201 with it (nodes and waves fixed)."""
    operator = basic_operator()
    new = read_new_rollout(json_body())
    approvals = int(current_app.config.get("FLEET_APPROVALS") or 1)
    rollout = rollout_store().create(new, operator, approvals)
    response = with_etag(rollout, 201)
    response.headers["Location"] = f"/api/fleet/rollouts/{rollout.id}"
    return response


@bp.get("/<int:rollout_id>")
def get_rollout(rollout_id):
    """Return one rollout: its waves' progress, audit trail and version (ETag)."""
    return with_etag(rollout_store().get(rollout_id))


@bp.get("/<int:rollout_id>/nodes")
def rollout_nodes(rollout_id):
    """Return the rollout's nodes in name order (``wave``, ``status``, ``after``, ``limit``)."""
    store = rollout_store()
    store.get(rollout_id)  # 404 for no such rollout
    wave, statuses, after, limit = node_rows_request(request.args)
    rows = store.wave_nodes(rollout_id, wave, statuses, limit, after)
    shown = [node_row(row) for row in rows]
    return {"nodes": shown, "next_after": shown[-1]["node"] if len(rows) == limit else None}


@bp.post("/<int:rollout_id>/<action>")
def act_on_rollout(rollout_id, action):
    """Approve, start, pause, resume (``skip``/``retry``) or abort, at the If-Match version."""
    operator = basic_operator()
    version = if_match()
    body = json_body(required=False)
    why = clean_text(body.get("reason"), "reason", 2000)
    skip = read_names(body.get("skip"), "skip")
    retry = read_names(body.get("retry"), "retry")
    store = rollout_store()
    try:
        store.act(rollout_id, action, operator, version, why, skip, retry)
    except StaleVersion as error:
        raise PreconditionFailed(str(error)) from None
    return with_etag(store.get(rollout_id))


def init_app(app) -> None:
    app.register_blueprint(bp)
