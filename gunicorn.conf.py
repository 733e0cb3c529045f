"""gunicorn settings for Pipeline Manager (`gunicorn -c gunicorn.conf.py 'webapp:create_app()'`).

Everything comes from the environment (``PIPELINE_BIND``, ``PIPELINE_WORKER_THREADS``,
``PIPELINE_WORKER_TIMEOUT``, ``PIPELINE_GRACEFUL_TIMEOUT``, declared in webapp/config.py, and
gunicorn's conventional ``WEB_CONCURRENCY``) so the same image runs anywhere.
No database connection is opened here or at import time: the app is imported in each worker after
the fork (no preload) and each worker opens its own connection on its first request.
A configuration that cannot serve (a weak, missing or unreadable secret key, development with
several workers, a write budget past the worker timeout) stops the start here, in the master,
with one ``Error:`` line and exit status 1.
"""

import logging
import os
import shutil
import sys
import tempfile

from webapp.accounts.keys import configured_key_problem, refusal
from webapp.core.config import load_settings
from webapp.core.errors import InvalidInput
from webapp.node.db import threads_problem


def _refuse(message):
    """Stop gunicorn before it starts, with one line and no traceback (exit status 1)."""
    raise SystemExit(f"Error: {message}")


# Every check that can refuse the start runs here, in the master, before any worker forks: an
# exception in the app factory would reach the operator as a worker's traceback instead.
try:
    _settings = load_settings(os.environ)
except InvalidInput as error:
    _refuse(error)
_DEVELOPMENT = _settings["ENV"] == "development"
_problem = configured_key_problem(_settings, _DEVELOPMENT)
if _problem:
    _refuse(refusal(_problem))

# The write budget must end inside the worker timeout, or gunicorn would kill a worker whose
# change is still waiting for the lock (and the operator would see a bare 502/500).
_MARGIN = 5.0
if _settings["WRITE_TIMEOUT"] + _MARGIN > _settings["WORKER_TIMEOUT"]:
    _refuse(
        f"PIPELINE_WRITE_TIMEOUT ({_settings['WRITE_TIMEOUT']:g} s) must end at least "
        f"{_MARGIN:g} s before PIPELINE_WORKER_TIMEOUT ({_settings['WORKER_TIMEOUT']:g} s): "
        "lower the first or raise the second"
    )

# One thread at least must stay free for probes while changes wait for a held lock.
if threads_problem(_settings["WORKER_THREADS"]):
    _refuse(threads_problem(_settings["WORKER_THREADS"]))

bind = _settings["BIND"]
_workers = os.environ.get("WEB_CONCURRENCY", "2").strip()
if not (_workers.isascii() and _workers.isdigit() and 1 <= int(_workers) <= 64):
    _refuse(f"WEB_CONCURRENCY must be a whole number from 1 to 64 (got {_workers!r})")
workers = int(_workers)
# Threads: a change waiting for a lock the sensor writer holds blocks one thread, not the
# worker; /healthz, polls and pages keep answering from the others (webapp/db.py caps waiting
# changes at half of them).
worker_class = "gthread"
threads = _settings["WORKER_THREADS"]
preload_app = False  # a connection inherited across fork would corrupt SQLite's locks
timeout = int(_settings["WORKER_TIMEOUT"])
graceful_timeout = int(_settings["GRACEFUL_TIMEOUT"])  # finish in-flight requests on SIGTERM
keepalive = 5
accesslog = "-"  # stdout
errorlog = "-"  # stderr
loglevel = "info"
# Heartbeat files on a RAM disk: a slow or overlay /tmp can make workers look hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No control socket: its default path ($HOME/.gunicorn) is shared by every gunicorn of a user, and
# the container's user has no home; we manage workers with signals (TERM, HUP, TTIN/TTOU).
control_socket_disable = True
# forwarded_allow_ips is left to gunicorn: FORWARDED_ALLOW_IPS, else 127.0.0.1 (a proxy in front).


def on_starting(server):
    """Prepare, before any worker forks, what every worker shares."""
    # The final count (`-w`, GUNICORN_CMD_ARGS) is known only here.
    refuse_development_workers(server.cfg.workers)
    # Workers count write retries in files here, so /metrics sums them whichever worker answers.
    # A fresh directory each start: files left by an earlier run would inflate the counters.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pipeline-metrics-")
    log_audit_to_stdout()


def refuse_development_workers(count):
    """Refuse development with several workers: each would sign with its own random key."""
    if _DEVELOPMENT and count > 1:
        _refuse(
            f"PIPELINE_ENV=development with {count} workers: development lets each worker make "
            "its own random secret key, so a session or form made by one fails in the others; "
            "run one worker (WEB_CONCURRENCY=1), or leave development and set a strong "
            "PIPELINE_SECRET_KEY"
        )


def nworkers_changed(server, new_value, old_value):
    """Keep development at one worker when TTIN asks for more (see refuse_development_workers)."""
    if _DEVELOPMENT and old_value is not None and new_value > old_value:
        server.log.error("PIPELINE_ENV=development runs one worker: TTIN ignored")
        server.num_workers = old_value


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live series (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory of this run."""
    shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)


def log_audit_to_stdout():
    """Send the store's one-JSON-line-per-change audit log to stdout, beside the access log."""
    audit = logging.getLogger("pipeline.audit")
    if not audit.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    audit.propagate = False
