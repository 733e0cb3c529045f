"""Probes: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Neither creates a file: liveness never touches the database, and readiness reads it as a request
would (a read never switches the journal mode or creates the embedded demo database).
"""

from flask import Blueprint

from webapp.core.errors import PipelineError
from webapp.core.queries import SCAN_BOUND
from webapp.node.db import get_store
from webapp.web.operators import signin_problem, users_file

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer that the process is up (no database access)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Answer 200 when the database exists, opens and has our schema, and the users file works."""
    store = get_store()
    problem, status = readiness(store)
    if problem:
        return not_ready(problem)
    # A missing table is fine: the uploader reads the default, the first change creates it.
    table = "present" if status["table_exists"] else "absent (created by the first change)"
    indexes = (
        "present"
        if status["indexed"]
        else (
            f"missing (a table another tool made): filtered reads cover the newest {SCAN_BOUND} "
            f"changes only; add them with: pipeline-manager --db {store.path} migrate"
        )
    )
    return {
        "status": "ready",
        "journal_mode": status["journal_mode"],
        "pipeline_config": table,
        "indexes": indexes,
    }


def readiness(store) -> tuple[str | None, dict]:
    """Return (why this server is not ready, or None; the database status): what /readyz
    answers, and what the dashboard shows beside its own view."""
    if not store.db.exists():
        return f"database not found: {store.path}", {}
    try:
        status = store.status()
        store.current()  # the table's shape and rows read as a request would read them
    except PipelineError as error:
        return str(error), {}
    # The users file is not the database, but with it broken nobody can sign in: out of rotation
    # until it is fixed (pages keep answering, read-only, for whoever still reaches them).
    problem = signin_problem()
    if problem:
        return f"sign-in unavailable: {problem} ({users_file()})", status
    return None, status


def not_ready(reason):
    return {"status": "unavailable", "reason": reason}, 503


def init_app(app) -> None:
    app.register_blueprint(bp)
