"""Login, logout and who is asking: operators from the users file, sessions kept server-side.

Writes need a signed-in operator, whose name becomes ``updated_by``; reads are open unless
``PIPELINE_READ_REQUIRES_LOGIN=1``. The session cookie holds only a session id and the name;
the record in sessions.py decides, so a logout, the idle or absolute limit, a removed account or
a new password end the session in every worker. Failed logins are limited per (name, address)
and per address (throttle.py) before any password is hashed, and passwords are hashed one at a
time server-wide (password_gate.py).
"""

import re
import threading
import time
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

from . import accounts
from .errors import PipelineError
from .operators import accounts_configured, operators, signin_problem, state_dir, users_file
from .password_gate import PasswordGate
from .sessions import SessionStore, SessionsUnavailable
from .throttle import LoginThrottle, whole_seconds

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
REFUSAL_PAUSE = 0.5  # seconds a refused login sleeps before its answer (see refuse())
# A path on this site: printable ASCII without backslashes (browsers read "\" as "/").
SITE_PATH = re.compile(r"/[!-\[\]-~]*")


class TooManyAttempts(PipelineError):
    """Too many failed logins from this address, or for this name from it: wait."""

    http_status = 429

    def __init__(self, wait: float):
        self.retry_after = whole_seconds(wait)
        super().__init__(f"too many failed logins: try again in {self.retry_after} s")


class SignInUnavailable(PipelineError):
    """Nobody can sign in until an administrator fixes the users file."""

    http_status = 503


class SignInBusy(PipelineError):
    """Other password checks hold the gate (password_gate.py): try again in a second."""

    http_status = 503
    retry_after = 1


def password_gate() -> PasswordGate:
    return current_app.extensions.setdefault(
        "pipeline.password_gate", PasswordGate(state_dir() / "password-check.lock")
    )


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


def throttle() -> LoginThrottle:
    directory = current_app.config.get("LOGIN_THROTTLE_DIR") or state_dir() / "login-throttle"
    return current_app.extensions.setdefault("login_throttle", LoginThrottle(directory))


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
    if record is None or hashed is None or record.fingerprint != accounts.fingerprint(hashed):
        if record is not None:
            sessions().end(sid, name)  # removed from the file, or a new password
        session.pop("sid", None)
        session.pop("operator", None)
        return None
    return name


def check_password(name: str, password: str, verify=accounts.verify) -> bool:
    """Return True for a right password; raise TooManyAttempts before hashing when limited."""
    problem = signin_problem()
    if problem:
        raise SignInUnavailable(f"sign-in is unavailable: {problem}")
    address = request.remote_addr or "?"
    wait = throttle().wait_seconds(name, address)
    if wait > 0:
        refuse(wait)  # even the right password waits: no oracle while locked
    if accounts.cached_success(users_file(), name, password):
        return True  # HTTP Basic repeats the password on every call: no bcrypt each time
    wait = throttle().charge(name, address)
    if wait > 0:
        refuse(wait)
    with password_gate().slot() as free:
        if not free:
            throttle().refund(name, address)  # not checked: not a failure either
            raise SignInBusy("sign-in is busy: try again in 1 s")
        ok = verify(users_file(), name, password)
    if ok:
        throttle().succeeded(name, address)
    return ok


def refuse(wait: float):
    """Raise TooManyAttempts, after a pause while few other refusals are pausing.

    A sprayer that ignores Retry-After would otherwise get thousands of cheap refusals a second,
    and answering them would take the CPU and the GIL from pages and polls. Asleep, a refusal
    costs a thread and no CPU: at most a quarter of a worker's threads pause at once (the rest
    are answered at once), so the pause cannot take the worker either.
    """
    pause = current_app.config.get("LOGIN_REFUSAL_PAUSE", REFUSAL_PAUSE)
    pausing = current_app.extensions.get("pipeline.refusal_pauses")
    if pausing is None:
        slots = max(1, int(current_app.config.get("WORKER_THREADS") or 1) // 4)
        pausing = current_app.extensions.setdefault(
            "pipeline.refusal_pauses", threading.BoundedSemaphore(slots)
        )
    if pause > 0 and pausing.acquire(blocking=False):
        try:
            time.sleep(pause)
        finally:
            pausing.release()
    raise TooManyAttempts(wait)


def start_session(name: str) -> bool:
    """Sign ``name`` in with a fresh session (and CSRF token); the previous one ends.

    Return False if the account vanished since its password was checked (a concurrent edit).
    """
    hashed = operators().users.get(name)
    if hashed is None:
        return False
    end_session()
    session.clear()
    session["sid"] = sessions().create(name, accounts.fingerprint(hashed))
    session["operator"] = name
    return True


def end_session() -> None:
    sid, name = session.get("sid"), session.get("operator")
    if isinstance(sid, str) and isinstance(name, str):
        sessions().end(sid, name)


def safe_next(target) -> str:
    """Return ``target`` if it is a plain path on this site, else the dashboard.

    Refused: other sites (``//evil``, ``///evil``, ``/\\evil``, ``https://...``), encoded slashes
    or backslashes that a proxy may decode into those (``/%2F/evil``), control characters.
    """
    if isinstance(target, str) and len(target) <= 2000 and SITE_PATH.fullmatch(target):
        parts = urlsplit(target)
        path = unquote(parts.path)  # what a proxy or browser may make of it must stay a path
        elsewhere = target.startswith("//") or path.startswith("//") or parts.netloc
        if not elsewhere and SITE_PATH.fullmatch(path):
            return target
    return url_for("dashboard.index")


def require_login_to_read():
    """Send anonymous readers to the login page when PIPELINE_READ_REQUIRES_LOGIN=1."""
    if not current_app.config.get("READ_REQUIRES_LOGIN") or request.blueprint == "api":
        return None
    if request.endpoint in OPEN_ENDPOINTS or current_operator():
        return None
    target = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.htmx:
        # htmx follows HX-Redirect with a full page load
        return htmx_flask.make_response("", 204, redirect=target)
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; sign the operator in."""
    from .forms import LoginForm

    form, error, status, headers = LoginForm(), None, 200, {}
    if form.validate_on_submit():
        try:
            name = form.username.data
            if check_password(name, form.password.data) and start_session(name):
                return redirect(safe_next(request.args.get("next")))
            error = "Unknown operator or wrong password."
        except TooManyAttempts as refusal:
            error, status = f"{str(refusal).capitalize()}.", 429
            headers["Retry-After"] = str(refusal.retry_after)
        except SignInBusy as busy:
            error, status = f"{str(busy).capitalize()}.", 503
            headers["Retry-After"] = str(busy.retry_after)
        except SignInUnavailable as problem:
            error, status = f"{str(problem).capitalize()}.", 503
        except SessionsUnavailable as problem:
            current_app.logger.error("%s", problem)  # names the directory; the page does not
            error, status = "Sign-in is unavailable: the server cannot record sessions.", 503
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
