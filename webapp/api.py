"""JSON API: read the pipeline and its history; change it with HTTP Basic auth and If-Match.

Records are the CLI's JSON (``Change.to_dict()``). Errors are ``{"error": message}`` with the
status README lists. The API never reads the session cookie, which is why it needs no CSRF token.
"""

from flask import Blueprint, current_app, jsonify, request

from .auth import check_password
from .db import get_store
from .errors import ConflictError, InvalidInput, PipelineError

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
    """Return the operator named by valid Basic credentials, else raise Unauthorized."""
    from . import accounts

    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise Unauthorized("authentication required: HTTP Basic with an operator account")
    ok, wait = check_password(auth.username, auth.password or "", accounts.verify_cached)
    if wait > 0:
        raise Unauthorized(f"too many failed logins: try again in {wait:.0f} s")
    if not ok:
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
    limit = request.args.get("limit", "20")
    before = request.args.get("before")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if before is not None and not before.isdigit():
        raise InvalidInput("before must be a change id")
    changes = get_store().history(limit=int(limit), before=int(before) if before else None)
    next_before = changes[-1].id if len(changes) == int(limit) else None
    return {"changes": [c.to_dict() for c in changes], "next_before": next_before}


def if_match_version() -> int | None:
    """Return the change id If-Match names (None: no precondition)."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidInput('If-Match must be the ETag of GET /api/pipeline, e.g. "12"')
    return int(value)


@bp.post("/pipeline")
def set_pipeline():
    """Set the pipeline as the authenticated operator; If-Match makes it compare-and-set."""
    operator = basic_operator()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "pipeline_type" not in body:
        raise InvalidInput('body must be a JSON object like {"pipeline_type": "filtered"}')
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("reason must be text")
    if current_app.config.get("REQUIRE_REASON") and not (reason or "").strip():
        raise InvalidInput("reason is required (PIPELINE_REQUIRE_REASON=1)")
    expect_id = if_match_version()
    precondition = expect_id is not None  # If-Match: HTTP's own compare-and-set, 412 when stale
    if not precondition:
        expect_id = body.get("expect_id")  # the same check from the body: 409 when stale
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
    return response


def init_app(app) -> None:
    app.register_blueprint(bp)
