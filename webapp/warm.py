"""A warm store per worker thread for the dashboard's poll, the hottest read there is.

``db.get_store()`` opens a connection per request; doing so (file checks, schema check, WAL
pragma) costs about half a millisecond, several times the poll's own single-row read. An
unchanged poll must stay well under a millisecond, so it reuses one store per thread instead.
Reads run to completion, so the idle connection holds no snapshot and never blocks checkpoints.
The connection is opened lazily, inside a request: after gunicorn forks, never before.
"""

import os
import threading

from flask import current_app

from .db import open_store
from .errors import PipelineError

EXTENSION = "pipeline.warm_stores"


def current_change():
    """Return the current change read through this thread's warm store."""
    local = current_app.extensions[EXTENSION]
    store = getattr(local, "store", None)
    if store is None or local.pid != os.getpid():
        local.store, local.pid = open_store(current_app), os.getpid()
        store = local.store
    try:
        return store.current()
    except PipelineError:
        # Reopen next time: the file may have been replaced or repaired meanwhile.
        local.store = None
        store.close()
        raise


def init_app(app) -> None:
    app.extensions[EXTENSION] = threading.local()
