"""Slow peers cannot hold the notifier (issue 15.5): a webhook receiver that trickles its answer
fails the attempt after a total time limit (logged and counted like any failure), and the
metrics server ends idle and trickling connections instead of keeping a thread for each."""

import socket
import threading
import urllib.request

import pytest
from hooklib import until
from test_notify import InProcess, set_in_process

from webapp.notify import metrics, webhooks
from webapp.notify.webhooks import DeliveryFailed, parse_webhook

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"x" * 200 + b"\r\n\r\nok"


class Trickler:
    """A real receiver on a loopback socket: reads each request, then sends its answer one byte
    every ``pace`` seconds (each byte well within a read timeout; the whole, never in time)."""

    def __init__(self, pace=0.05):
        self.pace = pace
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data or len(data) < self._request_length(data):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            for byte in ANSWER:
                if self.stop.wait(self.pace):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up: what the limit is for
                    return

    @staticmethod
    def _request_length(data: bytes) -> int:
        """Headers and body: closing with body bytes unread would reset the connection."""
        head, _, _ = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return len(head) + 4 + length

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.server.close()


def test_a_trickling_receiver_fails_the_attempt_after_the_total_limit():
    # Each read gets a byte within 1 s; the answer would take 11 s; the limit is 3 s.
    with Trickler() as receiver, pytest.raises(DeliveryFailed, match=r"^no complete answer in 3 s"):
        webhooks.post(parse_webhook(receiver.url), b"{}", {}, timeout=1.0)


def test_a_prompt_receiver_is_not_cut_by_the_limit():
    with Trickler(pace=0) as receiver:
        assert webhooks.post(parse_webhook(receiver.url), b"{}", {}, timeout=1.0) == 200


@pytest.mark.slow
def test_the_notifier_logs_and_counts_a_trickled_attempt_as_failed(db_path, tmp_path, caplog):
    with (
        caplog.at_level("WARNING", "pipeline.notify"),
        Trickler() as receiver,
        InProcess(db_path, [receiver.url], tmp_path / "state.json", timeout=0.5) as notifier,
    ):
        change = set_in_process(db_path, "filtered")
        until(lambda: notifier.snapshot().webhooks[0].failed >= 1, what="a failed attempt")
        assert notifier.snapshot().webhooks[0].delivered == 0
    assert f"change #{change} not delivered (no complete answer in 1.5 s" in caplog.text


# -- the metrics server ---------------------------------------------------------------------------


@pytest.fixture
def metrics_server():
    from webapp.notify.notifier import Snapshot

    registry = metrics.registry_for(lambda: Snapshot(0, True, 0.0, ()))
    server = metrics.serve(0, registry, lambda: True, seconds=1.0)
    yield server
    server.shutdown()
    server.server_close()


def healthz(server) -> int:
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return 0


class ThreadPeak:
    """The most threads this process ran while the block ran (sampled on a thread of its own)."""

    def __enter__(self):
        self.peak, self.stop = threading.active_count(), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, threading.active_count())

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()


@pytest.mark.slow
def test_400_idle_connections_do_not_keep_400_threads(metrics_server):
    before = threading.active_count()
    port = metrics_server.server_address[1]
    with ThreadPeak() as threads:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
        try:
            until(lambda: metrics_server.accepted >= 400, what="every connection accepted")
            assert metrics_server.refused > 0  # the slots were full: the rest closed at once
            # The idle ones are ended by the limit: scrapes are answered again.
            until(lambda: healthz(metrics_server) == 200, what="a scrape answered")
        finally:
            for sock in idle:
                sock.close()
    # A handler thread and its deadline's timer per slot, the sampler: no more.
    assert threads.peak - before <= 2 * metrics.MAX_CONNECTIONS + 1, threads.peak - before


@pytest.mark.slow
def test_a_connection_trickling_its_request_is_ended(metrics_server):
    port = metrics_server.server_address[1]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.5)  # each byte of the request goes out well within the server's read timeout
    ended = False
    try:
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"y" * 10_000:
            sock.sendall(bytes([byte]))
            try:
                if sock.recv(1) == b"":  # the server closed it
                    ended = True
                    break
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        ended = True
    finally:
        sock.close()
    assert ended
