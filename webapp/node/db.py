"""Flask glue for the store: one store per worker thread, opened on first use after the fork.

The store checks on every use that the file at the path is still the one it opened (database.py)
and reopens it otherwise, so a long-lived worker follows a restored backup without a restart.
A per-process gate keeps waiting changes from taking more than half of a worker's threads.
"""

import os
import threading

from flask import current_app

from webapp.core.store import PipelineStore

EXTENSION = "pipeline.stores"


class ThreadStores(threading.local):
    """This thread's store, and the process it was opened in (never inherited across fork)."""

    store = None
    pid = None


def get_store() -> PipelineStore:
    """Return this worker thread's store, opening it on first use."""
    app = current_app._get_current_object()
    local, gate = app.extensions[EXTENSION]
    if local.store is None or local.pid != os.getpid():
        local.store = PipelineStore.from_settings(app.config, write_gate=gate)
        local.pid = os.getpid()
    return local.store


def init_app(app) -> None:
    threads = int(app.config.get("WORKER_THREADS") or 1)
    # Changes that wait for a held lock may take at most half the threads: reads, probes and
    # polls keep the others (README: "When the sensor writer holds the lock").
    gate = threading.BoundedSemaphore(max(1, threads // 2))
    app.extensions[EXTENSION] = (ThreadStores(), gate)
