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
from webapp.core.files import check_replaceable
from webapp.notify.deadline import Deadline

LOG = logging.getLogger("pipeline.notify")
METRICS_FILE_EVERY = 60.0  # seconds: the file is rewritten at least this often, even when idle
# Scrapers are few: connections beyond this many at once are closed at once, and each may take
# this long in all (request in, answer out). Idle or trickling peers cannot pile up threads.
MAX_CONNECTIONS = 16
REQUEST_SECONDS = 5.0


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


class BoundedServer(ThreadingHTTPServer):
    """A threaded HTTP server with at most ``slots`` connections at once, each ended after
    ``seconds`` however slowly its peer sends (half-open and trickling connections included)."""

    daemon_threads = True
    request_queue_size = 64  # a burst is accepted (then served or closed), not left in SYN-wait

    def __init__(self, address, handler, *, slots=MAX_CONNECTIONS, seconds=REQUEST_SECONDS):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(slots)
        self.seconds = seconds
        self.accepted = 0
        self.refused = 0  # connections closed at once: every slot was taken

    def process_request(self, request, client_address):
        self.accepted += 1
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            with Deadline(self.seconds) as deadline:
                deadline.watch(request)
                super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(port: int, registry, healthy, *, seconds=REQUEST_SECONDS) -> BoundedServer:
    """Serve ``/metrics`` and ``/healthz`` (``healthy()``: the watch loop is alive) on ``port``.

    All interfaces, as a container needs; compose and the pod keep the port off the host.
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = seconds  # each read; the server's deadline bounds the whole request

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
        server = BoundedServer(("", port), Handler, seconds=seconds)
    except OSError as error:
        raise InvalidInput(f"cannot serve metrics on port {port} ({error.strerror})") from None
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
        check_replaceable(self.path, "metrics file")
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
