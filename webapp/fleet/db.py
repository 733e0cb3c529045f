"""Flask glue for the fleet store: one store per process (its pool serves every thread), opened
on first use after gunicorn's fork, which also creates the schema on an empty store."""

import os
import threading

from flask import current_app

from .migrate import create_if_empty
from .store import FleetStore

EXTENSION = "fleet.store"
_lock = threading.Lock()


def get_store() -> FleetStore:
    """Return this process's fleet store, opening it (and creating an empty schema) once."""
    app = current_app._get_current_object()
    held = app.extensions.get(EXTENSION)
    if held is not None and held[0] == os.getpid():
        return held[1]
    with _lock:
        held = app.extensions.get(EXTENSION)
        if held is None or held[0] != os.getpid():
            store = FleetStore.from_settings(app.config)
            create_if_empty(store.engine)
            app.extensions[EXTENSION] = held = (os.getpid(), store)
    return held[1]
