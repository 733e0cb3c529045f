"""Login, logout and who is asking: operators from the htpasswd file, held in the session.

Writes need a logged-in operator, whose name becomes ``updated_by``; reads are open unless
``PIPELINE_READ_REQUIRES_LOGIN=1``. Repeated failures are slowed down (see throttle.py).
"""

import os
from urllib.parse import urlsplit

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
from .throttle import LoginThrottle

bp = Blueprint("auth", __name__)

# Endpoints anyone may reach even when reading requires a login.
OPEN_ENDPOINTS = {"auth.login", "static", "health.healthz", "health.readyz", "metrics.metrics"}


def users_file():
    return current_app.config.get("USERS_FILE")


def accounts_configured() -> bool:
    """Return True when at least one operator account exists (else: read-only dashboard)."""
    return bool(accounts.load(users_file()))


def current_operator() -> str | None:
    """Return the logged-in operator, if the account still exists in the users file."""
    if "operator" not in g:
        name = session.get("operator")
        g.operator = name if name and name in accounts.load(users_file()) else None
    return g.operator


def throttle() -> LoginThrottle:
    directory = current_app.config.get("LOGIN_THROTTLE_DIR") or os.path.join(
        current_app.instance_path, "login-throttle"
    )
    return current_app.extensions.setdefault("login_throttle", LoginThrottle(directory))


def check_password(name: str, password: str, verify=accounts.verify) -> tuple[bool, float]:
    """Check a login; return ``(ok, wait)``: ``wait`` > 0 means refused, try again later."""
    address = request.remote_addr or "?"
    wait = throttle().wait_seconds(name, address)
    if wait > 0:
        return False, wait
    if verify(users_file(), name, password):
        throttle().succeeded(name, address)
        return True, 0.0
    throttle().failed(name, address)
    return False, 0.0


def safe_next(target: str | None) -> str:
    """Return ``target`` if it is a path on this site, else the dashboard (no open redirect)."""
    parts = urlsplit(target or "")
    if target and target.startswith("/") and not parts.netloc and not parts.scheme:
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

    form, error, status = LoginForm(), None, 200
    if form.validate_on_submit():
        ok, wait = check_password(form.username.data, form.password.data)
        if ok:
            session.clear()  # a fresh session (and CSRF token) for the new identity
            session["operator"] = form.username.data
            return redirect(safe_next(request.args.get("next")))
        if wait:
            error, status = f"Too many failed logins: try again in {wait:.0f} s.", 429
        else:
            error = "Unknown operator or wrong password."
    return render_template(
        "login.html", form=form, error=error, configured=accounts_configured()
    ), status


@bp.post("/logout")
def logout():
    """Sign the operator out."""
    session.clear()
    flash("Signed out.")
    return redirect(url_for("dashboard.index"))


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.before_request(require_login_to_read)
    app.context_processor(
        lambda: {"operator": current_operator(), "accounts_configured": accounts_configured()}
    )
