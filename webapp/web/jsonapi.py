"""What the JSON APIs share (the node's and the fleet centre's): HTTP Basic operators, whole
numbers from query strings, and errors answered as ``{"error": message}`` with their status.

The APIs never read the session cookie, which is why they need no CSRF token.
"""

import json

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from webapp.core.errors import ConflictError, PipelineError
from webapp.web.password_check import check_password

REALM = 'Basic realm="Pipeline Manager", charset="UTF-8"'


class Unauthorized(PipelineError):
    http_status = 401


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


def http_error(error: HTTPException):
    """Answer HTTP errors under /api/ as JSON (404, 405, 413...); pages keep their own."""
    if not request.path.startswith("/api/"):
        return error
    response = error.get_response()
    response.data = json.dumps({"error": error.description or error.name})
    response.mimetype = "application/json"
    return response


def require_basic_to_read():
    """Require Basic credentials for reads too when PIPELINE_READ_REQUIRES_LOGIN=1."""
    if current_app.config.get("READ_REQUIRES_LOGIN") and request.method in ("GET", "HEAD"):
        basic_operator()


def answer_errors_as_json(blueprint) -> None:
    """Answer ``blueprint``'s errors as JSON (call where the blueprint is made)."""
    blueprint.register_error_handler(PipelineError, api_error)
    blueprint.register_error_handler(400, http_error)  # before the app's HTML handler for 400


def register_http_errors(app) -> None:
    """Answer HTTP errors under /api/ as JSON: routing errors (404, 405) belong to no blueprint,
    so the app's handler tells /api/ apart."""
    app.register_error_handler(HTTPException, http_error)
