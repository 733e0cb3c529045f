"""Response headers, session cookie rules and CSRF for every form and htmx request.

Flask-WTF is imported lazily, inside the first request that needs it: ``create_app`` also builds
the app for the ``flask pipeline`` CLI, which must start fast and never checks a token.
"""

from flask import current_app, request
from flask.sessions import SecureCookieSessionInterface

# No inline script, no eval: htmx is configured through its <meta name="htmx-config"> tag and
# app.js; SVG timelines use presentation attributes and CSS classes, never style="".
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
# The API authenticates every request with HTTP Basic, and the fleet centre's report endpoint
# with the node's signature; neither reads the session cookie, so a forged cross-site request
# carries no credentials: that, and only that, exempts them from CSRF (and from the sign-in
# redirect of PIPELINE_READ_REQUIRES_LOGIN: they answer for themselves).
CSRF_EXEMPT_BLUEPRINTS = {"api", "fleet_report", "fleet_rollouts_api"}


class SessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose cookie is Secure whenever the request came over TLS."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def open_session(self, app, request):
        """Skip building the cookie signer when the request has no session cookie: API calls
        and signed fleet reports never carry one (a third of a report's Flask overhead)."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def add_headers(response):
    """Send the security headers on every response; never cache pages that hold a CSRF token."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def csrf_token() -> str:
    """Return this session's CSRF token (the Jinja global ``csrf_token()``)."""
    from flask_wtf.csrf import generate_csrf

    return generate_csrf()


def csrf_protect() -> None:
    """Refuse (400) a state-changing request without a valid token in the form or X-CSRFToken."""
    if request.method in SAFE_METHODS or not current_app.config["WTF_CSRF_ENABLED"]:
        return
    if request.blueprint in CSRF_EXEMPT_BLUEPRINTS or request.endpoint is None:
        return
    from flask_wtf.csrf import CSRFProtect

    CSRFProtect().protect()  # the same check CSRFProtect.init_app would install


def refuse_other_bodies() -> None:
    """Refuse (415) a page POST whose body is not a form: Flask-WTF would parse JSON itself."""
    if request.method in SAFE_METHODS or request.blueprint in CSRF_EXEMPT_BLUEPRINTS:
        return
    if request.mimetype in FORM_TYPES or not (request.mimetype or request.content_length):
        return
    from flask import abort

    abort(415, "Pages take HTML forms only (application/x-www-form-urlencoded).")


def init_app(app) -> None:
    # Flask-WTF's defaults, set here so they need no import at start-up. Tokens live as long as
    # the session: a dashboard left open for hours must still be able to apply a change.
    app.config.setdefault("WTF_CSRF_ENABLED", True)
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", True)
    app.config["WTF_CSRF_METHODS"] = {"POST", "PUT", "PATCH", "DELETE"}
    app.config.setdefault("WTF_CSRF_FIELD_NAME", "csrf_token")
    app.config.setdefault("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"])
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("WTF_CSRF_SSL_STRICT", True)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    # The largest honest request is a change with a 2000-character reason: refuse (413) bodies
    # far beyond that before they are read into memory.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.session_interface = SessionInterface()
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(refuse_other_bodies)
    app.before_request(csrf_protect)
    app.after_request(add_headers)
