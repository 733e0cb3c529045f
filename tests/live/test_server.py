"""A real gunicorn with two workers, started as the image starts it (tests/live.py)."""

import base64
import http.cookiejar
import json
import multiprocessing
import os
import re
import socket
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
import workers
from conftest import make_sensor_db
from live import OPERATOR, PASSWORD, LiveServer, metric, request, write_users_file

from webapp.core.store import PipelineStore

pytestmark = pytest.mark.slow

# The worker's pid in every access-log line, so a test can tell which worker answered.
ACCESS_FORMAT = "access pid=%(p)s %(m)s %(U)s %(s)s"
ACCESS_LINE = re.compile(r"^access pid=<(\d+)> (\w+) (\S+) (\d{3})$", re.M)


def master_fds(server):
    """Return what gunicorn's master process has open."""
    fd_dir = f"/proc/{server.process.pid}/fd"
    return [os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)]


def test_probes_and_metrics_answer_and_the_master_holds_no_database(db_path):
    with LiveServer(db_path, workers=2) as server:
        for _ in range(6):  # several answers: both workers are likely among them
            assert request(server.url + "/healthz")[0] == 200
            status, _, body = request(server.url + "/readyz")
            assert status == 200, body
            assert json.loads(body)["journal_mode"] == "delete"  # a read changes nothing
        result = workers.run_cli(
            "set",
            "filtered",
            "--by",
            "ops",
            "--reason",
            "r",
            env=workers.clean_env(PIPELINE_DB=db_path),
        )
        assert result.returncode == 0, result.stderr
        for _ in range(6):  # every worker reads the change from the database
            status, headers, body = request(server.url + "/metrics")
            assert status == 200
            assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert metric(body, "pipeline_last_change_id") == 1
        database_files = {str(db_path) + suffix for suffix in ("", "-wal", "-shm")}
        assert not database_files & set(master_fds(server))


def test_readiness_turns_503_when_the_database_becomes_unusable(db_path):
    with LiveServer(db_path, workers=2) as server:
        assert request(server.url + "/readyz")[0] == 200
        for suffix in ("", "-wal", "-shm"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        db_path.write_bytes(b"garbage, not SQLite\n" * 100)
        for _ in range(6):
            status, _, body = request(server.url + "/readyz")
            assert status == 503
            assert "not an SQLite database" in json.loads(body)["reason"]
        db_path.unlink()
        for _ in range(6):
            status, _, body = request(server.url + "/readyz")
            assert status == 503
            assert "database not found" in json.loads(body)["reason"]
            assert request(server.url + "/healthz")[0] == 200
        assert not db_path.exists()  # readiness never creates it
        make_sensor_db(db_path)
        assert request(server.url + "/readyz")[0] == 200


def test_busy_failures_are_summed_whichever_worker_is_scraped(db_path, tmp_path):
    users = write_users_file(tmp_path / "users.htpasswd")
    env = {"PIPELINE_USERS_FILE": str(users), "PIPELINE_WRITE_TIMEOUT": "0.3"}
    with LiveServer(db_path, workers=2, env=env) as server:
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            auth = "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()
            status, _, body = request(
                server.url + "/api/pipeline",
                data=json.dumps({"pipeline_type": "filtered", "reason": "busy"}).encode(),
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
        finally:
            holder.close()
        assert status == 503, body
        for _ in range(8):
            body = request(server.url + "/metrics")[2]
            assert metric(body, "pipeline_busy_failures_total") == 1
            assert metric(body, "pipeline_write_retries_total") >= 1


# -- login and a CSRF-protected change across workers ------------------------------------------


def hidden(html, name):
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    assert match, f"no {name} in:\n{html[:2000]}"
    return match.group(1)


def occupy_a_worker(server):
    """Send half a request: the sync worker that accepts it waits for the rest, busy."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return sock


def access_lines(server, start):
    return [
        (int(pid), method, path, int(status))
        for pid, method, path, status in ACCESS_LINE.findall(server.log()[start:])
    ]


def change_through_the_dashboard(server, pipeline_type):
    """Log in on one worker, then review and apply a change on the other; return the access log."""
    start = len(server.log())
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    first = occupy_a_worker(server)  # keeps worker A busy: worker B signs in
    status, _, page = request(server.url + "/login", opener=browser)
    assert status == 200
    login = {"username": OPERATOR, "password": PASSWORD, "csrf_token": hidden(page, "csrf_token")}
    status, _, page = request(server.url + "/login", data=login, opener=browser)
    assert status == 200 and 'id="change-form"' in page, page[:2000]
    second = occupy_a_worker(server)  # B is free now, so it takes this one: A answers the rest
    first.close()
    try:
        form = {
            "pipeline_type": pipeline_type,
            "reason": f"switch to {pipeline_type} <b>from the web</b>",
            "expect_id": hidden(page, "expect_id"),
            "csrf_token": hidden(page, "csrf_token"),
        }
        status, _, page = request(server.url + "/change", data=form, opener=browser)
        assert status == 200 and 'id="confirm-form"' in page, page[:2000]
        form["csrf_token"] = hidden(page, "csrf_token")
        status, _, page = request(server.url + "/change/apply", data=form, opener=browser)
        assert status == 200, page[:2000]
    finally:
        second.close()
    return access_lines(server, start)


def test_login_and_a_csrf_form_change_work_whichever_worker_answers(db_path, tmp_path):
    users = write_users_file(tmp_path / "users.htpasswd")
    with LiveServer(
        db_path,
        workers=2,
        env={
            "PIPELINE_USERS_FILE": str(users),
            "GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_FORMAT}'",
        },
    ) as server:
        crossed = False
        # gthread workers accept eagerly, so one worker may answer several logins in a row:
        # try until the two requests met different workers.
        for pipeline_type in ("filtered", "aggregated", "schematized", "raw") * 8:
            lines = change_through_the_dashboard(server, pipeline_type)
            with PipelineStore(db_path) as store:
                current = store.current()
            assert (current.pipeline_type, current.updated_by) == (pipeline_type, OPERATOR)
            assert current.source == "web"
            (login_pid,) = [
                pid for pid, method, path, _ in lines if (method, path) == ("POST", "/login")
            ]
            (apply_pid,) = [pid for pid, method, path, _ in lines if path == "/change/apply"]
            # The session and CSRF token made by one worker, accepted by the other:
            if login_pid != apply_pid:
                crossed = True
                break
        assert crossed, "every change was answered by the worker that signed in"
        audit = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        assert audit and audit[-1]["who"] == OPERATOR and audit[-1]["source"] == "web"
        assert audit[-1]["to"] == pipeline_type and audit[-1]["id"] == current.id


# -- bounded load --------------------------------------------------------------------------------


class Poller(threading.Thread):
    """Poll like a dashboard (``/poll?since=``) or an API client (ETag) until it sees ``target``."""

    def __init__(self, server, kind, target):
        super().__init__(daemon=True)
        self.server, self.kind, self.target = server, kind, target
        self.seen, self.requests, self.errors = 0, 0, []

    def poll_once(self):
        if self.kind == "poll":
            status, headers, _ = request(f"{self.server.url}/poll?since={self.seen}")
            if status == 200:
                self.seen = json.loads(headers["HX-Trigger"])["pipeline-changed"]["id"]
        else:
            status, _, body = request(
                self.server.url + "/api/pipeline", headers={"If-None-Match": f'"{self.seen}"'}
            )
            if status == 200:
                self.seen = json.loads(body)["id"] or 0
        if status not in (200, 204, 304):
            self.errors.append(status)

    def run(self):
        try:
            while not self.errors and (self.target["id"] is None or self.seen != self.target["id"]):
                self.poll_once()
                self.requests += 1
        except Exception as error:  # reported by the test, not lost in the thread
            self.errors.append(repr(error))


CLI_SETS_PER_SETTER = 20
TYPES = ["filtered", "aggregated", "schematized", "raw"]


def cli_setter(db_path, offset, outcomes):
    """Change the pipeline through the real CLI, one process after another."""
    env = workers.clean_env(PIPELINE_DB=db_path)
    for n in range(CLI_SETS_PER_SETTER):
        pipeline_type = TYPES[(n + offset) % 4]
        args = ("set", pipeline_type, "--by", f"setter-{offset}", "--reason", "load")
        result = workers.run_cli(*args, env=env)
        outcomes.append((result.returncode, result.stderr))


def api_writer(server, done, outcomes):
    """Change the pipeline through the JSON API until the CLI setters are done."""
    auth = "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()
    n = 0
    while not done.is_set():
        body = {"pipeline_type": TYPES[n % 4], "reason": f"load test #{n}"}
        status, _, text = request(
            server.url + "/api/pipeline",
            data=json.dumps(body).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        outcomes.append((status, text[:200]))
        n += 1


def test_polling_clients_see_the_last_change_under_cli_api_and_sensor_load(db_path, tmp_path):
    """Pollers, CLI sets, API sets and a sensor writer at once: no 5xx, everyone converges."""
    spawn = multiprocessing.get_context("spawn")
    barrier, stop, results = spawn.Barrier(2), spawn.Event(), spawn.Queue()
    sensor = spawn.Process(
        target=workers.sensor_writer, args=(str(db_path), barrier, stop, results)
    )
    users = write_users_file(tmp_path / "users.htpasswd")
    target = {"id": None}
    cli_outcomes, api_outcomes, done = [], [], threading.Event()
    with LiveServer(db_path, workers=2, env={"PIPELINE_USERS_FILE": str(users)}) as server:
        sensor.start()
        barrier.wait(timeout=120)
        pollers = [Poller(server, kind, target) for kind in ["poll"] * 4 + ["api"] * 2]
        writer = threading.Thread(target=api_writer, args=(server, done, api_outcomes))
        setters = [
            threading.Thread(target=cli_setter, args=(db_path, offset, cli_outcomes))
            for offset in (0, 2)
        ]
        for thread in [*pollers, writer, *setters]:
            thread.start()
        for thread in setters:
            thread.join(timeout=180)
        done.set()
        writer.join(timeout=60)
        stop.set()
        _, _, inserted, error = results.get(timeout=60)
        sensor.join(timeout=60)
        with PipelineStore(db_path) as store:
            target["id"] = store.current().version
        for poller in pollers:
            poller.join(timeout=30)  # bounded: a poller that never sees the last change fails

    assert error is None, error
    assert inserted > 0
    assert [code for code, _ in cli_outcomes] == [0] * (2 * CLI_SETS_PER_SETTER), cli_outcomes
    assert api_outcomes and {status for status, _ in api_outcomes} == {200}, api_outcomes
    assert target["id"] > 0
    for poller in pollers:
        assert not poller.errors, (poller.kind, poller.errors)
        assert not poller.is_alive() and poller.seen == target["id"], (poller.kind, poller.seen)
        assert poller.requests > 1


def test_gunicorn_refuses_to_start_with_an_unreadable_secret_key_file(db_path, tmp_path):
    env = {"PIPELINE_SECRET_KEY": "", "PIPELINE_SECRET_KEY_FILE": str(tmp_path / "missing")}
    with pytest.raises(RuntimeError, match="gunicorn exited") as refused:
        LiveServer(db_path, workers=1, env=env).start()
    assert "PIPELINE_SECRET_KEY_FILE: cannot read" in str(refused.value)
