"""Login, logout and who is asking: operators from the users file, sessions kept server-side.

Writes need a signed-in operator, whose name becomes ``updated_by``; reads are open unless
``PIPELINE_READ_REQUIRES_LOGIN=1``. The session cookie holds only a session id and the name;
the record in sessions.py decides, so a logout, the idle or absolute limit, a removed account or
a new password end the session in every worker. Passwords are checked under the login limits
of password_check.py.
"""

import re
from urllib.parse import unquote, urlsplit

import htmx_flask
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from webapp.accounts import users
from webapp.accounts.sessions import SessionStore, SessionsUnavailable
from webapp.web.operators import accounts_configured, operators, signin_problem, state_dir
from webapp.web.password_check import SignInBusy, SignInUnavailable, TooManyAttempts, check_password
from webapp.web.security import CSRF_EXEMPT_BLUEPRINTS

bp = Blueprint("auth", __name__)

# Endpoints anyone may reach even when reading requires a login.
OPEN_ENDPOINTS = {"auth.login", "static", "health.healthz", "health.readyz", "metrics.metrics"}
# Requests a page makes by itself: they never count as the operator being active.
PASSIVE_ENDPOINTS = {
    "dashboard.poll",
    "static",
    "health.healthz",
    "health.readyz",
    "metrics.metrics",
}
PAGES = "pipeline.pages"  # app.extensions key: the endpoints a sign-in may return to
# A path on this site: printable ASCII without backslashes (browsers read "\" as "/").
SITE_PATH = re.compile(r"/[!-\[\]-~]*")


def sessions() -> SessionStore:
    config = current_app.config
    directory = config.get("SESSION_DIR") or state_dir() / "sessions"
    return current_app.extensions.setdefault(
        "pipeline.sessions",
        SessionStore(
            directory,
            idle_seconds=60.0 * config["SESSION_IDLE_MINUTES"],
            lifetime_seconds=3600.0 * config["SESSION_HOURS"],
        ),
    )


def current_operator() -> str | None:
    """Return the signed-in operator, if their session is live and their account unchanged."""
    if "operator" not in g:
        g.operator = session_operator()
    return g.operator


def session_operator() -> str | None:
    sid, name = session.get("sid"), session.get("operator")
    if not (isinstance(sid, str) and isinstance(name, str)):
        return None
    if signin_problem():
        return None  # whether the account still exists cannot be told: nobody is signed in
    found = operators()
    record = sessions().get(sid, name, touch=request.endpoint not in PASSIVE_ENDPOINTS)
    hashed = found.users.get(name)
    if record is None or hashed is None or record.fingerprint != users.fingerprint(hashed):
        if record is not None:
            sessions().end(sid, name)  # removed from the file, or a new password
        session.pop("sid", None)
        session.pop("operator", None)
        return None
    return name


def start_session(name: str) -> bool:
    """Sign ``name`` in with a fresh session (and CSRF token); the previous one ends.

    Return False if the account vanished since its password was checked (a concurrent edit).
    """
    hashed = operators().users.get(name)
    if hashed is None:
        return False
    end_session()
    session.clear()
    session["sid"] = sessions().create(name, users.fingerprint(hashed))
    session["operator"] = name
    return True


def end_session() -> None:
    sid, name = session.get("sid"), session.get("operator")
    if isinstance(sid, str) and isinstance(name, str):
        sessions().end(sid, name)


def safe_next(target) -> str:
    """Return ``target`` if it is a page on this site, else the dashboard.

    Refused: other sites (``//evil``, ``///evil``, ``/\\evil``, ``https://...``), encoded slashes
    or backslashes that a proxy may decode into those (``/%2F/evil``), control characters, and
    paths that are no page (a fragment like ``/poll``, an API route, a download): only the
    endpoints the app registered with :func:`register_pages`.
    """
    if isinstance(target, str) and len(target) <= 2000 and SITE_PATH.fullmatch(target):
        parts = urlsplit(target)
        path = unquote(parts.path)  # what a proxy or browser may make of it must stay a path
        elsewhere = target.startswith("//") or path.startswith("//") or parts.netloc
        if not elsewhere and SITE_PATH.fullmatch(path) and is_page(parts.path):
            return target
    return url_for(current_app.config.get("HOME_ENDPOINT", "dashboard.index"))


def register_pages(app, *endpoints: str) -> None:
    """Name the endpoints that are whole pages: the only places a sign-in may return to."""
    app.extensions.setdefault(PAGES, set()).update(endpoints)


def is_page(path: str) -> bool:
    """Return True if a GET of ``path`` reaches an endpoint registered as a page."""
    from werkzeug.exceptions import HTTPException

    try:
        endpoint, _ = current_app.url_map.bind("localhost").match(path, method="GET")
    except HTTPException:  # no such page, another method only, or a redirect
        return False
    return endpoint in current_app.extensions.get(PAGES, ())


def page_to_return_to() -> str:
    """Return where a sign-in should lead back to: this page, or for a request the page made by
    itself (htmx: a poll, a fragment) the page it was made from (HX-Current-URL)."""
    if request.htmx:
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        if current.netloc == request.host:
            return current.path + (f"?{current.query}" if current.query else "")
        return url_for(current_app.config.get("HOME_ENDPOINT", "dashboard.index"))
    return request.full_path.rstrip("?")


def require_login_to_read():
    """Send anonymous readers to the login page when PIPELINE_READ_REQUIRES_LOGIN=1."""
    if not current_app.config.get("READ_REQUIRES_LOGIN"):
        return None
    if request.blueprint in CSRF_EXEMPT_BLUEPRINTS:  # they authenticate each request themselves
        return None
    if request.endpoint in OPEN_ENDPOINTS or current_operator():
        return None
    target = url_for("auth.login", next=safe_next(page_to_return_to()))
    if request.htmx:
        # htmx follows HX-Redirect with a full page load
        return htmx_flask.make_response("", 204, redirect=target)
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; sign the operator in."""
    from webapp.web.forms import LoginForm

    form, error, status, headers = LoginForm(), None, 200, {}
    if form.validate_on_submit():
        try:
            name = form.username.data
            if check_password(name, form.password.data) and start_session(name):
                return redirect(safe_next(request.args.get("next")))
            error = "Unknown operator or wrong password."
        except SessionsUnavailable as problem:
            current_app.logger.error("%s", problem)  # names the directory; the page does not
            error, status = "Sign-in is unavailable: the server cannot record sessions.", 503
        except (TooManyAttempts, SignInBusy, SignInUnavailable) as refusal:
            text = str(refusal)
            error, status = f"{text[:1].upper()}{text[1:]}.", refusal.http_status
            if getattr(refusal, "retry_after", None):
                headers["Retry-After"] = str(refusal.retry_after)
    page = render_template("login.html", form=form, error=error, configured=accounts_configured())
    return page, status, headers


@bp.post("/logout")
def logout():
    """Sign the operator out, ending the session for every copy of its cookie."""
    end_session()
    session.clear()
    flash("Signed out.")
    return redirect(url_for("dashboard.index"))


def page_context() -> dict:
    """Return who is signed in and whether anyone can, for every page."""
    return {
        "operator": current_operator(),
        "accounts_configured": accounts_configured(),
        "signin_problem": signin_problem(),
    }


def init_app(app) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = 3600 * app.config["SESSION_HOURS"]
    app.register_blueprint(bp)
    app.before_request(require_login_to_read)
    app.context_processor(page_context)
