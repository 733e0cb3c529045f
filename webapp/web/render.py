"""Rendering for every page: full page or fragment (one helper decides, as in Canaille), error
pages, and what ``base.html`` needs everywhere.

An htmx request that is not boosted wants only the fragment it will swap in; everything else (a
plain browser load, a form post without JavaScript, a boosted link) wants the whole page, which
``{% include %}``s the very same partial.
"""

from flask import abort, current_app, render_template
from htmx_flask import request  # flask's request, with the htmx headers as `request.htmx`

from webapp.core.changes import Change
from webapp.core.errors import PipelineError
from webapp.core.pipelines import DESCRIPTIONS
from webapp.core.timefmt import ago, iso, utc

HTMX_FILE = "htmx-2.0.11.min.js"
NAVIGATION = "pipeline.navigation"  # app.extensions key: (brand, ((endpoint, label), ...))
# htmx reads this from <meta name="htmx-config">: no eval, no inline styles or scripts (CSP).
# Refusals the operator must read (400 invalid, 403, 409 conflict, 422 form errors, 503 busy)
# are swapped in like any answer; other failures stay errors, which app.js reports as offline.
HTMX_CONFIG = {
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "selfRequestsOnly": True,
    "historyCacheSize": 0,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "(400|403|409|422|429|503)", "swap": True, "error": False},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}


def wants_fragment() -> bool:
    """Return True for an htmx request that swaps part of the page (not a boosted navigation)."""
    htmx = request.htmx
    # A history restore (back button after hx-push-url, cache missed) needs the whole page too.
    return bool(htmx) and not (htmx.boosted or htmx.history_restore_request)


def render(page_template: str, fragment_template: str, status: int = 200, **context):
    """Render the fragment for htmx, else the page (which includes that fragment)."""
    template = fragment_template if wants_fragment() else page_template
    return render_template(template, **context), status


def show_error(message: str, status: int):
    if wants_fragment():
        return render_template("partials/_error.html", message=message), status
    return render_template("error.html", message=message), status


def pipeline_error(error: PipelineError):
    """Show an error an operator can act on: one line, no traceback."""
    return show_error(str(error), error.http_status)


def bad_request(error):
    """Explain a refused request (most often a missing or expired CSRF token) in one line."""
    return show_error(f"{error.description} Reload the page and try again.", 400)


def refuse_without_secret():
    """Serve nothing when started by `flask run` without a usable PIPELINE_SECRET_KEY."""
    problem = current_app.config.get("SECRET_KEY_PROBLEM")
    if problem:
        abort(503, problem)


def page_globals() -> dict:
    """Return what base.html needs on every page."""
    config = current_app.config
    users_file = config.get("USERS_FILE") or "instance/users.htpasswd"
    command = f"flask --app webapp user add NAME --users-file {users_file}"
    if not config.get("USERS_FILE"):
        command += f"\nexport PIPELINE_USERS_FILE={users_file}  # then restart the dashboard"
    brand, navigation = current_app.extensions.get(NAVIGATION, ("Pipeline Manager", ()))
    return {
        "brand": brand,
        "navigation": navigation,
        "descriptions": DESCRIPTIONS,
        "htmx_file": HTMX_FILE,
        "htmx_config": HTMX_CONFIG,
        "add_user_command": command,
    }


def set_navigation(app, brand: str, links) -> None:
    """Name ``app`` in every page's header and list its pages there: ``(endpoint, label)``."""
    app.extensions[NAVIGATION] = (brand, tuple(links))


def type_label(value) -> str:
    """Show any stored type the way Change.type_label does (an unknown one says so)."""
    return Change(None, value, None, None, None, {}).type_label


def init_app(app) -> None:
    app.before_request(refuse_without_secret)
    app.context_processor(page_globals)
    app.register_error_handler(PipelineError, pipeline_error)
    app.register_error_handler(400, bad_request)
    app.jinja_env.filters.update(
        ago=ago, iso=lambda moment: iso(moment) or "", utc=utc, type_label=type_label
    )
