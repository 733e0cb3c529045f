"""Probes and monitoring: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

None of them creates a file: readiness checks that the database exists before the store opens it
(the embedded default database would otherwise be created), and liveness never touches it.
Pipeline facts in ``/metrics`` are read from the database at scrape time, so every gunicorn worker
reports the same values; write retries and busy failures are per-process events, summed across
workers by prometheus-client's multiprocess mode (``gunicorn.conf.py`` sets it up).
"""

import os
import threading

from flask import Blueprint, Response

from . import store as store_module
from .db import get_store
from .errors import PipelineError
from .pipelines import PIPELINE_TYPES

bp = Blueprint("health", __name__)

# prometheus_client takes ~100 ms to import: only /metrics and contended writes pay for it, so
# `flask pipeline get` stays fast.
_counters = {}
_counters_lock = threading.Lock()  # the store's listener may run in any request thread

COUNTER_HELP = {
    "write_retries": "Writes retried because another process held the SQLite write lock.",
    "busy_failures": "Writes that gave up: the lock was held past PIPELINE_WRITE_TIMEOUT.",
}


def counter(name):
    """Return this process's counter for store event ``name`` (created on first use)."""
    with _counters_lock:
        if name not in _counters:
            from prometheus_client import Counter, disable_created_metrics

            disable_created_metrics()  # multiprocess mode has no _created series: same output
            # registry=None: exported per scrape below, never through the global registry.
            _counters[name] = Counter(f"pipeline_{name}", COUNTER_HELP[name], registry=None)
        return _counters[name]


def count_store_event(name) -> None:
    """Store listener: count a retry or busy failure where every worker's scrape can see it."""
    counter(name).inc()


@bp.get("/healthz")
def healthz():
    """Answer that the process is up (no database access)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Answer 200 when the database exists, opens, has our schema and runs in WAL mode."""
    store = get_store()
    if not store.path.exists():
        return not_ready(f"database not found: {store.path}")
    try:
        status = store.status()
    except PipelineError as error:
        return not_ready(str(error))
    if status["journal_mode"].lower() != "wal":
        return not_ready(f"database is not in WAL mode ({status['journal_mode']})")
    # A missing table is fine: the uploader reads the default, the first change creates it.
    table = "present" if status["table_exists"] else "absent (created by the first change)"
    return {"status": "ready", "journal_mode": "wal", "pipeline_config": table}


def not_ready(reason):
    return {"status": "unavailable", "reason": reason}, 503


@bp.get("/metrics")
def metrics():
    """Export the current pipeline and write contention in Prometheus text format."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    registry = CollectorRegistry()
    registry.register(PipelineCollector(pipeline_facts(), get_store().buckets))
    for name in COUNTER_HELP:
        counter(name)  # so the series exist (at 0) before the first event
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        for name in COUNTER_HELP:
            registry.register(counter(name))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def pipeline_facts():
    """Return ``(current change, number of changes)`` from the database, or None if unusable."""
    store = get_store()
    if not store.path.exists():
        return None
    try:
        return store.current(), store.count()
    except PipelineError:
        return None


class PipelineCollector:
    """Turn facts read at scrape time into metric families."""

    def __init__(self, facts, buckets):
        self.facts = facts
        self.buckets = buckets

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("pipeline_database_up", "1 if the database could be read.")
        up.add_metric([], 0 if self.facts is None else 1)
        yield up
        if self.facts is None:
            return
        current, changes = self.facts
        active = GaugeMetricFamily(
            "pipeline_active",
            "1 for the pipeline the uploader applies now, 0 for the others.",
            labels=["pipeline_type", "bucket"],
        )
        for pipeline_type in PIPELINE_TYPES:
            is_current = pipeline_type == current.pipeline_type
            active.add_metric([pipeline_type, self.buckets[pipeline_type]], 1 if is_current else 0)
        yield active
        yield gauge(
            "pipeline_last_change_id", "Id of the newest change (0: never set).", current.version
        )
        when = current.updated_at.timestamp() if current.updated_at else 0
        yield gauge("pipeline_last_change_timestamp_seconds", "Time of the newest change.", when)
        total = CounterMetricFamily("pipeline_changes", "Changes recorded in pipeline_config.")
        total.add_metric([], changes)
        yield total


def gauge(name, documentation, value):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, value=value)


def init_app(app) -> None:
    store_module.on_stat(count_store_event)
    app.register_blueprint(bp)
