"""A total time limit for one exchange on a socket, whatever the peer does.

Per-operation socket timeouts do not bound a peer that sends one byte every few seconds: each
read succeeds in time, and the exchange never ends. A :class:`Deadline` shuts the sockets it
watches down when its time is up, so the blocked read returns at once and the exchange fails
(the webhook post is counted as failed; the metrics server's connection is closed). Standard
library only; one timer thread per deadline, only while it runs.
"""

import contextlib
import socket
import threading
import urllib.request


class Deadline:
    """Shut down every watched socket ``seconds`` after :meth:`start` (use as a context)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock):
        """Shut ``sock`` down at the deadline (at once if it has passed); return ``sock``."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._timer.cancel()

    def opener(self, *handlers) -> urllib.request.OpenerDirector:
        """Return a urllib opener whose every connection (proxies included) this deadline ends."""
        deadline = self

        class Watched:
            def do_open(self, http_class, request, **options):
                def connection(host, **arguments):
                    conn = http_class(host, **arguments)
                    create = conn._create_connection  # the raw socket, under any TLS layer
                    conn._create_connection = lambda *a, **k: deadline.watch(create(*a, **k))
                    return conn

                return super().do_open(connection, request, **options)

        class HTTP(Watched, urllib.request.HTTPHandler):
            pass

        class HTTPS(Watched, urllib.request.HTTPSHandler):
            pass

        return urllib.request.build_opener(HTTP, HTTPS, *handlers)


def _shut(sock) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing is left to end
        sock.shutdown(socket.SHUT_RDWR)
