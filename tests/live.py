"""A real gunicorn serving the app on a free loopback port, for server and browser tests."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
# The image's command after `python` (tests/test_deploy.py checks the Dockerfile and manifests).
GUNICORN_ARGS = ("-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()")
# A key the server accepts (webapp/keys.py refuses short or guessable ones), fixed for the run.
#: The operator the live tests sign in as (write_users_file).
OPERATOR, PASSWORD = "alice", "correct horse battery staple"
LIVE_SECRET_KEY = "9f1c2e7a4b8d3f6051e2c9a7b4d8f3e1a6c0b5d9e2f7a4c8b1d6e3f0a9c5b2d7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """Start ``gunicorn -c gunicorn.conf.py 'webapp:create_app()'`` exactly as the image does."""

    app_spec = GUNICORN_ARGS[-1]  # the fleet centre's tests serve 'webapp.fleet:create_app()'

    def __init__(self, db_path, *, workers=2, env=None, log_path=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PIPELINE_DB": str(db_path),
            "PIPELINE_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "PIPELINE_SECRET_KEY": LIVE_SECRET_KEY,
            # Sessions and login counts beside the database, not in the checkout's instance/:
            # each server of a test has its own, and keeps it across stop() and start().
            "PIPELINE_STATE_DIR": str(Path(db_path).parent / f"{Path(db_path).name}.state"),
            **(env or {}),
        }
        self.log_path = Path(log_path or Path(str(db_path) + f".gunicorn-{self.port}.log"))
        self.process = None

    def start(self, timeout=30.0):
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, *GUNICORN_ARGS[:-1], self.app_spec],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        # Wait until /healthz answers (the event we need), or the process dies.
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def request(url, data=None, headers=None, opener=None):
    """Return ``(status, headers, body)``; HTTP errors are answers, not exceptions."""
    body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def write_users_file(path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{OPERATOR}:{hashed}\n")
    return path


def metric(text, name):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")
