"""JSON API: read the pipeline and its history; change it with HTTP Basic auth and If-Match.

Records are the CLI's JSON (``Change.to_dict()``). Errors are ``{"error": message}`` with the
status README lists. The API never reads the session cookie, which is why it needs no CSRF token.
"""

import json

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from webapp.core.errors import ConflictError, InvalidInput, PipelineError
from webapp.core.text import MAX_ID, MAX_REASON, clean_text, whole_number
from webapp.node.db import get_store
from webapp.web.password_check import check_password

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_LIMIT = 500
REALM = 'Basic realm="Pipeline Manager", charset="UTF-8"'


class Unauthorized(PipelineError):
    http_status = 401


class PreconditionFailed(ConflictError):
    http_status = 412


def etag(change) -> str:
    return f'"{change.version}"'


def basic_operator() -> str:
    """Return the operator named by valid Basic credentials, else raise Unauthorized.

    Limited like the login form (429 before any hashing, see throttle.py).
    """
    from webapp.accounts import users

    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise Unauthorized("authentication required: HTTP Basic with an operator account")
    if not check_password(auth.username, auth.password or "", users.verify_cached):
        raise Unauthorized("unknown operator or wrong password")
    return auth.username


@bp.before_request
def require_login_to_read():
    """Require Basic credentials for reads too when PIPELINE_READ_REQUIRES_LOGIN=1."""
    if current_app.config.get("READ_REQUIRES_LOGIN") and request.method in ("GET", "HEAD"):
        basic_operator()


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


@bp.errorhandler(PipelineError)
def api_error(error: PipelineError):
    """Answer an error as JSON with its status (401 also names the auth scheme)."""
    body = {"error": str(error)}
    if isinstance(error, ConflictError) and error.current is not None:
        body["current"] = error.current.to_dict()
    response = jsonify(body)
    response.status_code = error.http_status
    if error.http_status == 401:
        response.headers["WWW-Authenticate"] = REALM
    if getattr(error, "retry_after", None):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@bp.errorhandler(400)  # found before the app's HTML handler for 400
def http_error(error: HTTPException):
    """Answer HTTP errors under /api/ as JSON (404, 405, 413...); pages keep their own."""
    if not request.path.startswith(bp.url_prefix + "/"):
        return error
    response = error.get_response()
    response.data = json.dumps({"error": error.description or error.name})
    response.mimetype = "application/json"
    return response


def init_app(app) -> None:
    app.register_blueprint(bp)
    # Routing errors (404, 405) belong to no blueprint: the app's handler tells /api/ apart.
    app.register_error_handler(HTTPException, http_error)
