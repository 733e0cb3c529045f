"""``/metrics``: the current pipeline and write contention, in Prometheus text format.

Pipeline facts are read from the database at scrape time, so every gunicorn worker reports the
same values; write retries and busy failures are per-process events, summed across workers by
prometheus-client's multiprocess mode (``gunicorn.conf.py`` sets it up). Every read is one
indexed single-row statement: a scrape costs the same with a million changes.
"""

import os
import threading

from flask import Blueprint, Response

from webapp.core import events
from webapp.core.errors import PipelineError
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.node.db import get_store

bp = Blueprint("metrics", __name__)

# prometheus_client takes ~100 ms to import: only /metrics and contended writes pay for it.
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


@bp.get("/metrics")
def metrics():
    """Export the current pipeline and write contention in Prometheus text format."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    store = get_store()
    registry = CollectorRegistry()
    registry.register(PipelineCollector(current_change(store), store.buckets))
    for name in COUNTER_HELP:
        counter(name)  # so the series exist (at 0) before the first event
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        for name in COUNTER_HELP:
            registry.register(counter(name))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def current_change(store):
    """Return the current change, or None if the database cannot be read."""
    try:
        return store.current()
    except PipelineError:
        return None


class PipelineCollector:
    """Turn facts read at scrape time into metric families."""

    def __init__(self, current, buckets):
        self.current = current
        self.buckets = buckets

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("pipeline_database_up", "1 if the database could be read.")
        up.add_metric([], 0 if self.current is None else 1)
        yield up
        if self.current is None:
            return
        current = self.current
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
            "pipeline_unmanaged_type",
            "1 when the newest row names a type this tool does not manage (another tool's).",
            0 if current.managed else 1,
        )
        yield gauge(
            "pipeline_last_change_id", "Id of the newest change (0: never set).", current.version
        )
        when = current.updated_at.timestamp() if current.updated_at else 0
        yield gauge("pipeline_last_change_timestamp_seconds", "Time of the newest change.", when)


def gauge(name, documentation, value):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, value=value)


def init_app(app) -> None:
    events.on_stat(count_store_event)
    app.register_blueprint(bp)
