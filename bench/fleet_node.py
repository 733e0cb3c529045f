"""Benchmark: a node's fleet reporting — change → centre API latency (p50/p90/max) and the
reporting notifier's idle CPU.

Starts a real centre (gunicorn, 2 workers, ``webapp.fleet:create_app()``, SQLite in a temporary
folder) and ``pipeline-manager notify --fleet URL --node bench-node --interval I`` (heartbeat
--heartbeat, default 60) on a temporary sensor database, with a sensor writer process committing
5 readings every --sensor-pause seconds, as on a node. Then --changes pipeline changes, each at
a random phase of the watch interval; latency runs from ``set()`` returning (the commit) until the
centre's ``GET /api/fleet/nodes/bench-node`` shows that change as current (polled every 10 ms).
Then the notifier's CPU (from /proc) over --idle-seconds with no pipeline change: once with the
sensor writer committing, once with nothing writing (heartbeats still go).

Targets (issue 17): p50 ≤ 1 s; idle CPU ≤ 1 % of one core.

    .venv/bin/python bench/fleet_node.py [--interval 1] [--changes 40] [--idle-seconds 60]
"""

import argparse
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from notify_latency import measure, percentile, print_idle_cpu, sensor_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "5e8a1c7f3b9d2e6a0c4f8b1d7e3a9c5f2b6d0e4a8c1f7b3d9e5a2c6f0b4d8e1a"
NODE = "bench-node"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_centre(folder: Path):
    """Start the centre under gunicorn; return (process, base URL) once /healthz answers."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    env.update(
        PIPELINE_FLEET_DB=str(folder / "fleet.db"),
        PIPELINE_FLEET_SECRET=SECRET,
        PIPELINE_SECRET_KEY=SECRET[::-1],
        PIPELINE_STATE_DIR=str(folder / "centre-state"),
        PIPELINE_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
    )
    log = (folder / "centre.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp.fleet:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the centre did not start: see {folder / 'centre.log'}")


def centre_current_id(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/api/fleet/nodes/{NODE}?limit=1", timeout=5) as answer:
            return json.loads(answer.read())["current"].get("id")
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--heartbeat", type=int, default=60)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--sensor-pause", type=float, default=0.01)
    args = parser.parse_args()

    from webapp.accounts.signatures import derive_node_key

    folder = Path(tempfile.mkdtemp(prefix="fleet-node-bench-"))
    db, store = sensor_database(folder)

    centre, url = start_centre(folder)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    env["PIPELINE_FLEET_KEY"] = derive_node_key(SECRET, NODE)
    env["PIPELINE_FLEET_HEARTBEAT"] = str(args.heartbeat)
    notifier_args = ["--fleet", url, "--node", NODE, "--interval", str(args.interval)]

    def arrival(change):
        while centre_current_id(url) != change.id:
            time.sleep(0.01)
        return time.monotonic()

    try:
        # Ready once the centre acknowledged a first report.
        notifier, latencies, busy_cpu, quiet_cpu, load_before = measure(
            db, store, args, notifier_args, env, "acknowledged up to", arrival
        )
    finally:
        os.killpg(centre.pid, 15)
        centre.wait(30)
    load_after = os.getloadavg()[0]

    p50 = percentile(latencies, 0.5)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"load average: {load_before:.1f} -> {load_after:.1f}")
    print(
        f"notifier: --fleet --interval {args.interval:g} --heartbeat {args.heartbeat}; "
        f"sensor writer: 5 rows / {args.sensor_pause:g} s; centre: gunicorn 2 workers, SQLite"
    )
    print()
    print("| changes | min ms | p50 ms | p90 ms | max ms |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {len(latencies)} | {min(latencies):.0f} | {p50:.0f} | "
        f"{percentile(latencies, 0.9):.0f} | {max(latencies):.0f} |"
    )
    print()
    print_idle_cpu(args.idle_seconds, busy_cpu, quiet_cpu)
    print()
    print(f"p50 {p50:.0f} ms (target <= 1000 ms): {'met' if p50 <= 1000 else 'MISSED'}")
    worst = max(busy_cpu[1], quiet_cpu[1])
    print(f"idle CPU {worst:.2f} % (target <= 1 %): {'met' if worst <= 1 else 'MISSED'}")
    print(f"notifier exit code on SIGTERM: {notifier.returncode}")


if __name__ == "__main__":
    main()
