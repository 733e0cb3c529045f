"""Benchmark: webhook delivery latency (commit to receiver, p50/p99) and the notifier's idle CPU.

Starts ``pipeline-manager notify --interval 0.5`` as a process on a temporary sensor database,
with a local HTTP receiver (in this process) as its webhook. This process then makes --changes
pipeline changes at random moments (so each commit falls at a random point of the watch
interval), and measures from the moment ``set()`` returned (the commit) to the moment the
receiver took the post. A sensor writer process commits readings every --sensor-pause seconds
throughout, as on a node, so ``PRAGMA data_version`` moves at every check. Then the notifier's
CPU time (from /proc) is read over --idle-seconds with no pipeline change: once with the sensor
writer running, once with nothing writing at all.

Targets: p50 ≤ interval/2 + 50 ms; idle CPU ≤ 1 % of one core.

    .venv/bin/python bench/notify_latency.py [--interval 0.5] [--changes 100] [--idle-seconds 30]
"""

import argparse
import multiprocessing
import os
import platform
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = ("raw", "schematized", "filtered", "aggregated")
SENSOR_SCHEMA = (
    "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "sensor_id TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL)"
)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def receiver():
    """Start a webhook receiver on a free loopback port; return (server, queue of arrivals)."""
    arrivals = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrivals.put((time.monotonic(), int(self.headers["X-Pipeline-Change-Id"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrivals


def sensor_writer(path, pause, stop):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    while not stop.wait(pause):
        conn.execute("BEGIN IMMEDIATE")
        for n in range(5):
            conn.execute(
                "INSERT INTO sensor_readings (sensor_id, value, recorded_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (f"s-{n}", random.random()),
            )
        conn.execute("COMMIT")
    conn.close()


def cpu_seconds(pid) -> float:
    """User + system CPU of process ``pid`` and all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid, seconds) -> tuple[float, float]:
    """Return (CPU ms used, percent of one core) by the process over ``seconds`` of wall time."""
    cpu, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(pid) - cpu
    return used * 1000, 100 * used / (time.monotonic() - wall)


def sensor_database(folder: Path):
    """Create a sensor database in ``folder`` with one change made; return (path, store)."""
    from webapp.core.store import PipelineStore

    db = folder / "sensor_data.db"
    conn = sqlite3.connect(db)
    conn.execute(SENSOR_SCHEMA)
    conn.commit()
    conn.close()
    store = PipelineStore(db, write_timeout=10)
    store.set("raw", updated_by="bench", reason="start")  # WAL, table and indexes in place
    return db, store


def print_idle_cpu(seconds: float, busy_cpu, quiet_cpu) -> None:
    """Print the idle CPU table: with the sensor writer committing, then with nothing writing."""
    print("| notifier idle for | CPU ms used | % of one core |")
    print("|---|---:|---:|")
    for what, (used_ms, percent) in [
        ("sensor writer committing", busy_cpu),
        ("nothing writing", quiet_cpu),
    ]:
        print(f"| {seconds:g} s, {what} | {used_ms:.0f} | {percent:.2f} |")
    print(f"(CPU time from /proc/PID/stat, in ticks of {1000 / os.sysconf('SC_CLK_TCK'):g} ms)")


def measure(db, store, args, notifier_args, env, ready, arrival):
    """Run ``pipeline-manager --db DB notify NOTIFIER_ARGS`` (ready once a log line holds
    ``ready``) beside a sensor writer; make ``args.changes`` changes at random phases of
    ``args.interval``, each timed from its commit to ``arrival(change)`` (a monotonic time);
    then read the notifier's idle CPU with and without the writer. Return (the ended notifier,
    latencies in ms, busy CPU, quiet CPU, load average before)."""
    script = Path(sys.executable).parent / "pipeline-manager"
    notifier = subprocess.Popen(
        [script, "--db", db, "notify", *notifier_args], env=env, stderr=subprocess.PIPE, text=True
    )
    for line in notifier.stderr:
        if ready in line:
            break
    threading.Thread(target=lambda: list(notifier.stderr), daemon=True).start()  # drain it
    stop_sensor = multiprocessing.Event()
    sensor = multiprocessing.Process(
        target=sensor_writer, args=(db, args.sensor_pause, stop_sensor)
    )
    sensor.start()
    load_before = os.getloadavg()[0]
    latencies, rng, last = [], random.Random(1), "raw"
    try:
        for _ in range(args.changes):
            time.sleep(rng.uniform(0.1, 2 * args.interval))  # a random phase of the interval
            last = rng.choice([t for t in TYPES if t != last])
            change = store.set(last, updated_by="bench", reason="latency").change
            committed = time.monotonic()
            latencies.append((arrival(change) - committed) * 1000)
        busy_cpu = idle_cpu(notifier.pid, args.idle_seconds)
        stop_sensor.set()
        sensor.join()
        quiet_cpu = idle_cpu(notifier.pid, args.idle_seconds)
    finally:
        stop_sensor.set()
        notifier.terminate()
        notifier.wait(30)
    return notifier, latencies, busy_cpu, quiet_cpu, load_before


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--sensor-pause", type=float, default=0.01)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    db, store = sensor_database(folder)

    server, arrivals = receiver()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    notifier_args = ["--webhook", url, "--interval", str(args.interval)]

    def arrival(change):
        arrived, change_id = arrivals.get(timeout=30)
        assert change_id == change.id, (change_id, change.id)
        return arrived

    try:
        notifier, latencies, busy_cpu, quiet_cpu, load_before = measure(
            db, store, args, notifier_args, env, " watching ", arrival
        )
    finally:
        server.shutdown()
    load_after = os.getloadavg()[0]

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    target_ms = args.interval * 1000 / 2 + 50
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"load average: {load_before:.1f} -> {load_after:.1f}")
    print(
        f"notifier: --interval {args.interval:g}; sensor writer: 5 rows / {args.sensor_pause:g} s"
    )
    print()
    print("| changes | min ms | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(latencies)} | {min(latencies):.0f} | {p50:.0f} | "
        f"{percentile(latencies, 0.9):.0f} | {p99:.0f} | {max(latencies):.0f} |"
    )
    print()
    print_idle_cpu(args.idle_seconds, busy_cpu, quiet_cpu)
    print()
    verdict = "met" if p50 <= target_ms else "MISSED"
    print(f"p50 {p50:.0f} ms (target <= {target_ms:.0f} ms): {verdict}")
    worst = max(busy_cpu[1], quiet_cpu[1])
    print(f"idle CPU {worst:.2f} % (target <= 1 %): {'met' if worst <= 1 else 'MISSED'}")
    print(f"notifier exit code on SIGTERM: {notifier.returncode}")


if __name__ == "__main__":
    main()
