"""The notifier's metrics in Prometheus text format: on a port (with ``/healthz``) or in a file.

Its own process, so not the dashboard's ``/metrics``. Values are read from the notifier at each
scrape or file write, so the lag is always "newest id minus last acknowledged id" of that moment.
No Flask.
"""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from webapp.core.errors import InvalidInput

LOG = logging.getLogger("pipeline.notify")
METRICS_FILE_EVERY = 60.0  # seconds: the file is rewritten at least this often, even when idle


class NotifierCollector:
    """Export what ``snapshot()`` (a :class:`webapp.notify.notifier.Snapshot`) reports."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def collect(self):
        snap = self.snapshot()
        yield GaugeMetricFamily(
            "pipeline_notify_newest_change_id",
            "Newest pipeline_config change id the notifier has seen.",
            value=snap.newest,
        )
        yield GaugeMetricFamily(
            "pipeline_notify_database_up",
            "1 while the last check of the database worked.",
            value=1 if snap.database_up else 0,
        )
        yield GaugeMetricFamily(
            "pipeline_notify_last_check_timestamp_seconds",
            "When the notifier last checked the database (Unix time).",
            value=snap.last_check,
        )
        labels = ["webhook"]
        delivered = CounterMetricFamily(
            "pipeline_notify_delivered", "Changes acknowledged (2xx) by the webhook.", labels=labels
        )
        failed = CounterMetricFamily(
            "pipeline_notify_failed_attempts",
            "Posts not acknowledged: an answer other than 2xx, a timeout, a refused connection.",
            labels=labels,
        )
        acknowledged = GaugeMetricFamily(
            "pipeline_notify_acknowledged_change_id",
            "Last change id the webhook acknowledged (or skipped at the first start).",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "pipeline_notify_lag_changes",
            "Newest change id minus the webhook's last acknowledged id.",
            labels=labels,
        )
        last = GaugeMetricFamily(
            "pipeline_notify_last_delivery_timestamp_seconds",
            "When the webhook last acknowledged a change (Unix time; absent until it has).",
            labels=labels,
        )
        for hook in snap.webhooks:
            delivered.add_metric([hook.label], hook.delivered)
            failed.add_metric([hook.label], hook.failed)
            acknowledged.add_metric([hook.label], hook.acknowledged)
            lag.add_metric([hook.label], max(0, snap.newest - hook.acknowledged))
            if hook.last_delivery is not None:
                last.add_metric([hook.label], hook.last_delivery)
        yield from (delivered, failed, acknowledged, lag, last)


def registry_for(snapshot) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NotifierCollector(snapshot))
    return registry


def serve(port: int, registry, healthy) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` (``healthy()``: the watch loop is alive) on ``port``.

    All interfaces, as a container needs; compose and the pod keep the port off the host.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                ok = healthy()
                body = json.dumps({"status": "ok" if ok else "stalled"}).encode()
                self._answer(200 if ok else 503, "application/json", body)
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz\n")

        def _answer(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass  # a scrape every few seconds is not news

    try:
        server = ThreadingHTTPServer(("", port), Handler)
    except OSError as error:
        raise InvalidInput(f"cannot serve metrics on port {port} ({error.strerror})") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="notify metrics", daemon=True).start()
    return server


def write_file(path, registry) -> None:
    """Write the metrics to ``path`` for node_exporter's textfile collector (temp + rename)."""
    write_to_textfile(str(path), registry)


class MetricsFile:
    """Rewrite the metrics file after news, and at least every minute (its age shows we run)."""

    def __init__(self, path, registry):
        self.path, self.registry = path, registry
        self.written = None
        self.problem = None

    def check(self) -> None:
        """Write the file once now: a path that cannot be written is refused at start."""
        try:
            write_file(self.path, self.registry)
        except OSError as error:
            raise InvalidInput(
                f"cannot write the metrics file {self.path} ({error.strerror or error})"
            ) from None

    def __call__(self, news: bool) -> None:
        now = time.monotonic()
        if not news and self.written is not None and now - self.written < METRICS_FILE_EVERY:
            return
        try:
            write_file(self.path, self.registry)
        except OSError as error:
            if str(error) != self.problem:
                LOG.error("cannot write the metrics file %s (%s)", self.path, error)
                self.problem = str(error)
            return
        self.written, self.problem = now, None
