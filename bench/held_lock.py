"""Benchmark: do probes and polls keep answering while the sensor writer holds the write lock?

Starts gunicorn exactly as the image does (tests/live.py), twice in the same run: "before" with
sync workers (``--worker-class sync --threads 1``, the serving model until issue 7) and "after"
with the image's gthread workers. In each, a second process holds SQLite's write lock for
``--hold`` seconds (as a sensor writer mid-transaction) while four changes are posted through
the API and wait for it; meanwhile one client asks ``/healthz`` and another ``/poll`` in a loop.
Prints p50/p99/max latency of those reads and how many did not answer within 10 s.

    .venv/bin/python bench/held_lock.py [--hold 15] [--workers 2]
"""

import argparse
import base64
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from live import LiveServer  # noqa: E402

from webapp.core.store import PipelineStore  # noqa: E402

OPERATOR, PASSWORD = "bench", "bench-password-1"
HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def ask(url, timeout=10.0):
    """Return the latency in ms of one GET, or None if it did not answer in ``timeout``."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError:
        pass
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return None
    return (time.perf_counter() - started) * 1000


def post_change(server, pipeline_type, results):
    auth = base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()
    body = json.dumps({"pipeline_type": pipeline_type, "reason": "waits for the lock"}).encode()
    request = urllib.request.Request(
        server.url + "/api/pipeline",
        data=body,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            results.append(response.status)
    except urllib.error.HTTPError as error:
        results.append(error.code)
    except (urllib.error.URLError, TimeoutError) as error:
        results.append(str(error))


def measure(label, db_path, users, hold, workers, extra_args):
    env = {
        "PIPELINE_USERS_FILE": str(users),
        "PIPELINE_WRITE_TIMEOUT": str(hold + 5),
        "PIPELINE_WORKER_TIMEOUT": str(hold + 15),
        "GUNICORN_CMD_ARGS": extra_args,
    }
    latencies = {"/healthz": [], "/poll": []}
    with LiveServer(db_path, workers=workers, env=env) as server:
        with PipelineStore(db_path) as store:
            since = store.current().version
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(db_path), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline() == "locked\n"
        held_until = time.monotonic() + hold
        writes = []
        writers = [
            threading.Thread(target=post_change, args=(server, t, writes))
            for t in ("aggregated", "raw", "schematized", "filtered")
        ]
        for writer in writers:
            writer.start()
        time.sleep(0.5)  # let the four changes reach the server and start waiting

        def reader(path, url):
            while time.monotonic() < held_until - 0.5:
                latencies[path].append(ask(url))

        readers = [
            threading.Thread(target=reader, args=("/healthz", server.url + "/healthz")),
            threading.Thread(target=reader, args=("/poll", f"{server.url}/poll?since={since}")),
        ]
        for thread in readers:
            thread.start()
        for thread in readers + writers:
            thread.join()
        holder.wait()
    rows = []
    for path, values in latencies.items():
        answered = sorted(v for v in values if v is not None)
        if answered:
            p99 = answered[min(len(answered) - 1, int(0.99 * len(answered)))]
            rows.append(
                f"| {label} | `{path}` | {len(values)} | {len(values) - len(answered)} | "
                f"{statistics.median(answered):.1f} | {p99:.1f} | {answered[-1]:.0f} |"
            )
        else:
            rows.append(f"| {label} | `{path}` | {len(values)} | {len(values)} | – | – | – |")
    return rows, writes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        users = Path(folder) / "users.htpasswd"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        users.write_text(f"{OPERATOR}:{hashed}\n")
        table = []
        outcomes = {}
        for label, extra in (
            ("before: sync workers", "--worker-class sync --threads 1"),
            ("after: gthread workers", ""),
        ):
            db_path = Path(folder) / f"{label.split(':')[0]}.db"
            conn = sqlite3.connect(db_path)
            conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, value REAL)")
            conn.close()
            with PipelineStore(db_path) as store:
                store.set("filtered", updated_by="bench", reason="start")
            rows, writes = measure(label, db_path, users, args.hold, args.workers, extra)
            table += rows
            outcomes[label] = writes
    print(
        f"machine: nproc={os.cpu_count()}, load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; lock held {args.hold:g} s, 4 changes waiting, "
        f"{args.workers} workers"
    )
    print()
    print("| server | read | requests | no answer in 10 s | p50 ms | p99 ms | max ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(table))
    print()
    for label, writes in outcomes.items():
        print(f"{label}: the four changes answered {writes}")


if __name__ == "__main__":
    main()
