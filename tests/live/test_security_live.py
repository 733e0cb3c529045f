"""The security model against a real two-worker gunicorn (tests/live.py), where it spans workers.

Which worker answers is forced, not hoped for: the other one is paused with SIGSTOP, so the
listening socket's connections can only be accepted by the one left running, and the access log
(with the worker's pid) shows who answered.
"""

import base64
import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from live import LiveServer

from webapp.accounts.throttle import ADDRESS_FREE_ATTEMPTS, FREE_ATTEMPTS

pytestmark = pytest.mark.slow

OPERATOR, PASSWORD = "alice", "correct horse battery staple"
ACCESS_FORMAT = "access pid=%(p)s %(m)s %(U)s %(s)s"
ACCESS_LINE = re.compile(r"^access pid=<(\d+)> (\w+) (\S+) (\d{3})$", re.M)


def write_users(path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{OPERATOR}:{hashed}\nbob:{hashed}\n")
    return path


class Browser:
    """One visitor with a cookie jar; every request on a new connection."""

    def __init__(self, server):
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path, data=None, headers=None):
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(self.server.url + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def csrf(self, path="/login"):
        page = self.request(path)[2]
        return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def log_in(self, name=OPERATOR, password=PASSWORD):
        form = {"username": name, "password": password, "csrf_token": self.csrf()}
        return self.request("/login", form)

    def operator(self):
        page = self.request("/")[2]
        found = re.search(r'id="operator-name">([^<]+)<', page)
        return found.group(1) if found else None

    def cookie(self):
        return next(cookie.value for cookie in self.jar if cookie.name == "session")

    def with_cookie(self, value):
        """Return a new visitor carrying ``value`` as its session cookie (a replay)."""
        other = Browser(self.server)
        other.jar.set_cookie(
            http.cookiejar.Cookie(
                0, "session", value, None, False, "127.0.0.1", False, False, "/", True,
                False, None, False, None, None, {},
            )
        )  # fmt: skip
        return other


def worker_pids(server, count=2, timeout=30.0):
    """Return the pids of the master's workers, once all ``count`` have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == server.process.pid:
                pids.append(int(entry.name))
        if len(pids) >= count:
            return sorted(pids)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} workers")


@contextlib.contextmanager
def only(server, pid):
    """Let only worker ``pid`` accept connections: the others are paused meanwhile."""
    others = [other for other in worker_pids(server) if other != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def answered_by(server, start):
    return [
        (int(pid), method, path, int(status))
        for pid, method, path, status in ACCESS_LINE.findall(server.log()[start:])
    ]


def live_server(db_path, tmp_path, **env):
    users = write_users(tmp_path / "users.htpasswd")
    settings = {
        "PIPELINE_USERS_FILE": str(users),
        "GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_FORMAT}'",
        **env,
    }
    return LiveServer(db_path, workers=2, env=settings)


CHANGE = {"pipeline_type": "filtered", "reason": "replayed", "expect_id": "0"}


def test_logout_on_one_worker_ends_the_session_on_the_other(db_path, tmp_path):
    with live_server(db_path, tmp_path) as server:
        first, second = worker_pids(server)
        alice = Browser(server)
        with only(server, first):
            assert alice.log_in()[0] == 200 and alice.operator() == OPERATOR
        captured = alice.cookie()
        thief = alice.with_cookie(captured)
        with only(server, second):
            assert thief.operator() == OPERATOR  # the same sign-in in the other worker
        start = len(server.log())
        with only(server, first):
            token = alice.csrf("/")
            assert alice.request("/logout", {"csrf_token": token})[0] == 200  # followed
            assert alice.operator() is None
        with only(server, second):
            assert thief.operator() is None
            token = thief.csrf("/")
            status, _, page = thief.request("/change/apply", {**CHANGE, "csrf_token": token})
            assert status == 403, page[:500]
        pids = {pid for pid, method, path, _ in answered_by(server, start)}
        assert pids == {first, second}


def test_a_session_survives_a_restart_and_a_logout_survives_it_too(db_path, tmp_path):
    server = live_server(db_path, tmp_path)
    with server:
        alice = Browser(server)
        alice.log_in()
        kept = alice.cookie()
        bob = Browser(server)
        bob.log_in("bob")
        token = bob.csrf("/")
        bob_cookie = bob.cookie()
        assert bob.request("/logout", {"csrf_token": token})[0] == 200
    with server:  # stop() then start(): a new master and new workers, the same state directory
        assert alice.with_cookie(kept).operator() == OPERATOR
        assert bob.with_cookie(bob_cookie).operator() is None


def test_failed_logins_are_counted_across_workers(db_path, tmp_path):
    with live_server(db_path, tmp_path) as server:
        first, second = worker_pids(server)
        for attempt in range(FREE_ATTEMPTS):
            with only(server, (first, second)[attempt % 2]):
                assert Browser(server).log_in(password="wrong")[0] == 200
        with only(server, second):
            status, headers, page = Browser(server).log_in()  # the right password waits too
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert "Too many failed logins: try again in" in page and "in 0 s" not in page


def basic(name, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def api_set(server, name, password, headers=None):
    body = json.dumps({"pipeline_type": "raw", "reason": "r"}).encode()
    headers = {"Content-Type": "application/json", **basic(name, password), **(headers or {})}
    return Browser(server).request("/api/pipeline", body, headers)


def test_spraying_from_one_address_is_refused_cheaply_on_every_worker(db_path, tmp_path):
    with live_server(db_path, tmp_path) as server:
        first, second = worker_pids(server)
        statuses = []
        for attempt in range(ADDRESS_FREE_ATTEMPTS + 6):
            with only(server, (first, second)[attempt % 2]):
                statuses.append(api_set(server, f"user{attempt}", "guess")[0])
        assert statuses[:ADDRESS_FREE_ATTEMPTS] == [401] * ADDRESS_FREE_ATTEMPTS
        assert statuses[ADDRESS_FREE_ATTEMPTS] == 429
        # Each refusal pauses 0.5 s, so a 1 s or 2 s lock may run out meanwhile: then one more
        # attempt is checked, and the next lock is twice as long.
        assert statuses[ADDRESS_FREE_ATTEMPTS:].count(401) <= 2, statuses


def test_behind_a_proxy_an_attacker_cannot_lock_out_an_operator(db_path, tmp_path):
    """PIPELINE_PROXY_COUNT=1: the proxy's X-Forwarded-For is the client address."""
    with live_server(db_path, tmp_path, PIPELINE_PROXY_COUNT="1") as server:
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        for _ in range(30):  # until the lock is long enough to test within it
            status, headers, _ = api_set(server, OPERATOR, "guess", attacker)
            if status == 429 and int(headers["Retry-After"]) >= 4:
                break
        else:
            raise AssertionError("the attacker's address was never locked for 4 s")
        assert api_set(server, OPERATOR, PASSWORD, attacker)[0] == 429
        operator = {"X-Forwarded-For": "198.51.100.7"}
        status, _, body = api_set(server, OPERATOR, PASSWORD, operator)
        assert status == 200, body


def test_a_broken_users_file_keeps_the_site_up_and_is_logged_once(db_path, tmp_path):
    with live_server(db_path, tmp_path) as server:
        first, second = worker_pids(server)
        users = tmp_path / "users.htpasswd"
        users.unlink()
        users.mkdir()  # what a failed `cp -r` or a bad volume mount leaves
        for pid in (first, second, first, second):
            with only(server, pid):
                for path in ("/", "/login", "/history", "/api/pipeline"):
                    status, _, page = Browser(server).request(path)
                    assert status == 200, (path, status)
                status, _, body = Browser(server).request("/readyz")
                assert status == 503
                assert "users file cannot be read" in json.loads(body)["reason"]
                assert Browser(server).log_in()[0] == 503
        assert 'id="signin-unavailable"' in Browser(server).request("/")[2]
        reports = [line for line in server.log().splitlines() if "users file" in line]
        assert len(reports) == 1, reports
        assert "is a directory" in reports[0] and "Traceback" not in server.log()


def test_raw_control_characters_in_headers_are_refused_by_the_server(db_path, tmp_path):
    with live_server(db_path, tmp_path) as server:
        for header in (b"X-CSRFToken: a\rb", b'If-Match: "1\x00"', b"HX-Request: \x7f"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /api/pipeline HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
                answer = sock.recv(4096)
            status = int(answer.split()[1])
            assert status < 500, answer[:200]
        assert "Traceback" not in server.log()
