"""Dashboard pages (stub until the dashboard lands)."""

from flask import Blueprint, abort, current_app, render_template

from .db import get_store

bp = Blueprint("dashboard", __name__)


@bp.before_app_request
def refuse_without_secret():
    """Serve nothing when started by `flask run` without PIPELINE_SECRET_KEY outside development."""
    if current_app.config.get("MISSING_SECRET_KEY"):
        abort(503, "PIPELINE_SECRET_KEY is not set: refusing to serve outside development")


@bp.get("/")
def index():
    """Show the current pipeline."""
    return render_template("index.html", current=get_store().current())


def init_app(app) -> None:
    app.register_blueprint(bp)
