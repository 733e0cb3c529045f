"""Flask glue for the store: one store per worker thread, opened on first use after the fork.

The store checks on every use that the file at the path is still the one it opened (database.py)
and reopens it otherwise, so a long-lived worker follows a restored backup without a restart.
A per-process gate keeps waiting changes from taking more than half of a worker's threads
(WriteGate), and at least one thread is always left for probes, polls and pages.
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


MIN_THREADS = 2  # one for a change waiting for a held lock, one for probes and pages
QUEUE_WAIT = 2.0  # seconds a change may queue for a permit: many writes' worth when none waits


class WriteGate:
    """Permits for changes in progress: half the threads; a few more may queue briefly.

    A change holds a permit while it writes, and while it waits for a lock another process
    holds. A burst of changes that merely follow one another (a script in parallel) queues
    for a permit for up to ``QUEUE_WAIT`` s; only when every permit and queue place is taken is
    a change refused (503) at once. Permits plus queue places leave at least a quarter of the
    threads (one at least) to reads and probes. The store calls ``acquire(blocking=False)``.
    """

    def __init__(self, threads: int, wait: float = QUEUE_WAIT):
        self.permits = max(1, threads // 2)
        self.queue = max(0, (threads - self.permits) // 2)
        self.wait = wait
        self._permits = threading.BoundedSemaphore(self.permits)
        self._queue = threading.BoundedSemaphore(self.queue) if self.queue else None

    def acquire(self, blocking: bool = False) -> bool:
        if self._permits.acquire(blocking=False):
            return True
        if self._queue is None or not self._queue.acquire(blocking=False):
            return False
        try:
            return self._permits.acquire(timeout=self.wait)
        finally:
            self._queue.release()

    def release(self) -> None:
        self._permits.release()


def threads_problem(threads: int) -> str | None:
    """Return why ``threads`` per worker cannot keep a thread for probes, or None."""
    if threads >= MIN_THREADS:
        return None
    return (
        f"PIPELINE_WORKER_THREADS={threads} leaves no thread for /healthz, /readyz and pages "
        f"while a change waits for a held lock: use at least {MIN_THREADS}"
    )


def init_app(app) -> None:
    threads = int(app.config.get("WORKER_THREADS") or MIN_THREADS)
    # Changes that wait for a held lock may take at most half the threads: reads, probes and
    # polls keep the others (README: "When the sensor writer holds the lock").
    app.extensions[EXTENSION] = (ThreadStores(), WriteGate(max(threads, MIN_THREADS)))
