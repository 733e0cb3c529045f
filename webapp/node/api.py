"""JSON API: read the pipeline and its history; change it with HTTP Basic auth and If-Match.

Records are the CLI's JSON (``Change.to_dict()``). Errors are ``{"error": message}`` with the
status README lists. The API never reads the session cookie, which is why it needs no CSRF token.
"""

from flask import Blueprint, current_app, jsonify, request

from webapp.core.errors import ConflictError, InvalidInput
from webapp.core.text import MAX_ID, MAX_REASON, clean_text, whole_number
from webapp.node.db import get_store
from webapp.web.jsonapi import (
    answer_errors_as_json,
    basic_operator,
    register_http_errors,
    require_basic_to_read,
)

bp = Blueprint("api", __name__, url_prefix="/api")
answer_errors_as_json(bp)

MAX_LIMIT = 500


class PreconditionFailed(ConflictError):
    http_status = 412


def etag(change) -> str:
    return f'"{change.version}"'


bp.before_request(require_basic_to_read)


@bp.get("/pipeline")
def get_pipeline():
    """Return the current pipeline; 304 when If-None-Match names its id."""
    change = get_store().current()
    if etag(change) in request.if_none_match or request.if_none_match.contains_weak(
        str(change.version)
    ):
        response = current_app.response_class(status=304)
    else:
        response = jsonify(change.to_dict())
    response.headers["ETag"] = etag(change)
    return response


@bp.get("/history")
def get_history():
    """Return changes newest first, ``limit`` at a time, older than the ``before`` cursor."""
    limit = whole_number(request.args.get("limit", "20"), "limit", 1, MAX_LIMIT)
    before = request.args.get("before")
    before = None if before is None else whole_number(before, "before (a change id)", 0, MAX_ID)
    changes = get_store().history(limit=limit, before=before)
    next_before = changes[-1].id if len(changes) == limit else None
    return {"changes": [c.to_dict() for c in changes], "next_before": next_before}


def if_match_version() -> int | None:
    """Return the change id If-Match names (None: no precondition)."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    try:
        return whole_number(value, "If-Match")
    except InvalidInput:
        raise InvalidInput('If-Match must be the ETag of GET /api/pipeline, e.g. "12"') from None


def json_body() -> dict:
    """Return the request's JSON object; refuse anything else in one line (never a 500)."""
    if not request.is_json:
        raise InvalidInput("send Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than Python's decoder recurses
        body = None
    if not isinstance(body, dict) or "pipeline_type" not in body:
        raise InvalidInput('body must be a JSON object like {"pipeline_type": "filtered"}')
    return body


@bp.post("/pipeline")
def set_pipeline():
    """Set the pipeline as the authenticated operator; If-Match makes it compare-and-set."""
    operator = basic_operator()
    body = json_body()
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("reason must be text")
    clean_text(reason, "reason", MAX_REASON)  # the text rules first: "\n" is refused, not empty
    if current_app.config.get("REQUIRE_REASON") and not (reason or "").strip():
        raise InvalidInput("reason is required (PIPELINE_REQUIRE_REASON=1)")
    expect_id = if_match_version()
    precondition = expect_id is not None  # If-Match: HTTP's own compare-and-set, 412 when stale
    if not precondition:
        expect_id = body.get("expect_id")  # the same check from the body: 409 when stale
        if isinstance(expect_id, int) and not isinstance(expect_id, bool) and expect_id > MAX_ID:
            raise InvalidInput(f"expect_id must be a change id from 0 to {MAX_ID}")
    try:
        result = get_store().set(
            body["pipeline_type"],
            updated_by=operator,
            reason=reason,
            source="api",
            expect_id=expect_id,
        )
    except ConflictError as error:
        if precondition:
            raise PreconditionFailed(str(error), error.current) from None
        raise
    response = jsonify(result.to_dict())
    response.headers["ETag"] = etag(result.change)
    return response


def init_app(app) -> None:
    register_http_errors(app)
    app.register_blueprint(bp)
