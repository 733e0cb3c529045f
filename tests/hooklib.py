"""A real webhook receiver on 127.0.0.1 and the notifier as a real process, for the notify tests.

Tests wait on events (a post arriving, a log line) with timeouts, never on sleeps.
"""

import collections
import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from live import free_port
from workers import clean_env, start_cli

TOKEN = "T0KEN-in-the-path"  # must never reach a log line, a metric or the state file
WAIT = 20.0  # seconds any one event may take on a loaded 2-core machine


@dataclass(frozen=True)
class Post:
    """One request the receiver took, and the status it answered."""

    path: str
    headers: dict
    body: bytes
    status: int

    @property
    def change_id(self) -> int:
        return int(self.headers["X-Pipeline-Change-Id"])

    @property
    def record(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server that records every POST and answers 200, or the statuses it was given.

    ``answers``: statuses for the next posts, in order (then 200). ``hold(change_id)``: the post
    of that change is recorded, then left unanswered until ``release()``.
    """

    def __init__(self, port=None, answers=()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/{TOKEN}"
        self.posts = queue.Queue()
        self.answers = collections.deque(answers)
        self.taken = []  # every post, in arrival order
        self._held = None
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                with receiver._lock:
                    status = receiver.answers.popleft() if receiver.answers else 200
                    post = Post(self.path, headers, body, status)
                    receiver.taken.append(post)
                receiver.posts.put(post)
                if receiver._held is not None and post.change_id == receiver._held:
                    receiver._release.wait(WAIT)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the notifier was killed meanwhile

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        """Close the port: the notifier's connections are refused until ``start()``."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self, change_id):
        self._held = change_id

    def release(self):
        self._release.set()

    def next_post(self, timeout=WAIT) -> Post:
        try:
            return self.posts.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no post within {timeout} s; taken: {self.ids()}") from None

    def acknowledged_until(self, change_id, timeout=WAIT) -> list[Post]:
        """Wait until change ``change_id`` got a 2xx answer; return the posts taken meanwhile."""
        posts = []
        while True:
            post = self.next_post(timeout)
            posts.append(post)
            if post.change_id == change_id and post.status < 300:
                return posts

    def ids(self, status=None) -> list[int]:
        with self._lock:
            return [p.change_id for p in self.taken if status is None or p.status == status]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def signed(secret: str, body: bytes) -> str:
    """The signature a receiver computes (README: "Notifications (webhooks)")."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    """``pipeline notify`` in a real process (through ``entrance``), its log read as it comes."""

    def __init__(self, db_path, *args, entrance="pipeline-manager", env=None):
        self.process = start_cli(
            "--db", db_path, "notify", *args, env=clean_env(**(env or {})), entrance=entrance
        )
        self.lines = []
        self._news = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            with self._news:
                self.lines.append(line.rstrip("\n"))
                self._news.notify_all()
        with self._news:
            self.lines.append(None)  # end of the log: the process is gone
            self._news.notify_all()

    def wait_for(self, text, count=1, timeout=WAIT) -> list[str]:
        """Wait until ``count`` log lines hold ``text``; return them."""

        def found():
            return [line for line in self.lines if line is not None and text in line]

        with self._news:
            done = self._news.wait_for(
                lambda: len(found()) >= count or None in self.lines, timeout=timeout
            )
            if not done or len(found()) < count:
                raise AssertionError(f"no {count} log lines with {text!r}:\n{self.log()}")
            return found()

    def wait_started(self):
        return self.wait_for("INFO watching ")

    def log(self) -> str:
        return "\n".join(line for line in self.lines if line is not None)

    def stop(self, signal_number=None, timeout=WAIT):
        """Send SIGTERM (or ``signal_number``); return the exit code."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal_number or signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(WAIT)  # the log ends with the process
        self.process.stdout.close()
        self.process.stderr.close()


def scrape(port, path="/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(metrics_text, name, webhook=None) -> float:
    """Return one sample of ``name`` (for ``webhook``'s label) in Prometheus text."""
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        if key == name or (webhook and key.startswith(f"{name}{{") and webhook in key):
            return float(value)
    raise AssertionError(f"{name} {webhook or ''} not in:\n{metrics_text}")


def until(condition, timeout=WAIT, what="condition"):
    """Poll ``condition()`` (an outside process's state: nothing to wait on) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def serve_once(handler_body):
    """Serve ``handler_body(handler)`` for GET/POST on a free loopback port; return the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            handler_body(self)

        do_GET = do_POST  # noqa: N815

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
