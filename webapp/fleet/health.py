"""The centre's probes: ``/healthz`` (the process is up) and ``/readyz`` (the store answers, its
schema is at this code's revision, and sign-in works)."""

from flask import Blueprint

from webapp.core.errors import PipelineError
from webapp.web.operators import signin_problem, users_file

from .db import get_store
from .migrate import schema_status

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer that the process is up (no store access)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Answer 200 when the store is reachable and migrated, 503 saying what is wrong."""
    try:
        store = get_store()
        status = schema_status(store.engine)
    except PipelineError as error:
        return not_ready(str(error))
    if status.problem():
        return not_ready(status.problem(), revision=status.current, head=status.head)
    problem = signin_problem()
    if problem:
        return not_ready(f"sign-in unavailable: {problem} ({users_file()})")
    return {
        "status": "ready",
        "store": store.name,
        "backend": store.engine.dialect.name,
        "revision": status.current,
    }


def not_ready(reason, **extra):
    return {"status": "unavailable", "reason": reason, **extra}, 503


def init_app(app) -> None:
    app.register_blueprint(bp)
