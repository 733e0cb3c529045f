"""``/metrics`` of the centre: nodes by state and type (read from the maintained counts at scrape
time, the same in every worker and host), reports accepted by outcome and refused by reason,
and the ingest latency histogram (per-process events summed across gunicorn's workers by
prometheus-client's multiprocess mode, as the node app's are)."""

import os
import threading

from flask import Blueprint, Response

from webapp.core.errors import PipelineError

bp = Blueprint("metrics", __name__)

_metrics = {}
_lock = threading.Lock()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _metric(name):
    """Return this process's metric ``name`` (created on first use, never in a global registry)."""
    with _lock:
        if name not in _metrics:
            from prometheus_client import Counter, Histogram, disable_created_metrics

            disable_created_metrics()
            if name == "accepted":
                _metrics[name] = Counter(
                    "fleet_reports_accepted",
                    "Reports answered 200, by outcome: stored, replay (a webhook-id already "
                    "held) or out_of_order (older than the one held: changes nothing).",
                    ["outcome"],
                    registry=None,
                )
            elif name == "refused":
                _metrics[name] = Counter(
                    "fleet_reports_refused",
                    "Reports refused, by reason (the answer's reason field).",
                    ["reason"],
                    registry=None,
                )
            else:
                _metrics[name] = Histogram(
                    "fleet_ingest_seconds",
                    "Time from a report's arrival to its answer (checks and store).",
                    buckets=LATENCY_BUCKETS,
                    registry=None,
                )
        return _metrics[name]


def count_accepted(outcome: str, seconds: float) -> None:
    _metric("accepted").labels(outcome).inc()
    _metric("latency").observe(seconds)


def count_refused(reason: str, seconds: float) -> None:
    _metric("refused").labels(reason).inc()
    _metric("latency").observe(seconds)


@bp.get("/metrics")
def metrics():
    """Export node counts, report outcomes and ingest latency in Prometheus text format."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    from .db import get_store

    registry = CollectorRegistry()
    try:
        summary = get_store().summary()
    except PipelineError:
        summary = None
    registry.register(FleetCollector(summary))
    for name in ("accepted", "refused", "latency"):
        _metric(name)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        for metric in _metrics.values():
            registry.register(metric)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


class FleetCollector:
    """The store's counts, read at scrape time, as metric families."""

    def __init__(self, summary):
        self.summary = summary

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("fleet_store_up", "1 if the fleet store could be read.")
        up.add_metric([], 0 if self.summary is None else 1)
        yield up
        if self.summary is None:
            return
        states = GaugeMetricFamily("fleet_nodes", "Nodes by state.", labels=["state"])
        for state, count in self.summary["by_state"].items():
            states.add_metric([state], count)
        yield states
        types = GaugeMetricFamily(
            "fleet_nodes_by_type",
            "Nodes by the pipeline type they last reported (managed: 0 for other tools' types).",
            labels=["pipeline_type", "managed"],
        )
        for pipeline_type, count in self.summary["by_type"].items():
            types.add_metric([pipeline_type, "1"], count)
        for pipeline_type, count in self.summary["unmanaged"].items():
            types.add_metric([pipeline_type, "0"], count)
        yield types


def init_app(app) -> None:
    app.register_blueprint(bp)
