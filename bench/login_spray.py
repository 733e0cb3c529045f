"""Benchmark: does a login spray slow the dashboard down? `/poll` latency, quiet and under spray.

    .venv/bin/python bench/login_spray.py [--duration 4] [--rounds 6] [--sprayers 4] [--from-many]

Starts gunicorn exactly as the image does (tests/live.py) with a users file of real-cost bcrypt
hashes (12 rounds, what `flask user add` writes), then measures one dashboard poller
(`GET /poll?since=N`, unchanged: 204, one keep-alive connection, a 20 ms pause between polls,
as an open dashboard tab would) in alternating phases of ``--duration`` seconds:

- quiet: nothing else;
- spray: ``--sprayers`` processes send `POST /api/pipeline` with wrong HTTP Basic credentials
  (a new random name and password each time) as fast as answers come back, from one address.

The sprayers start once and are switched on and off, so the phases interleave closely and load
from the rest of the machine falls on both alike. The result is the p99 of all sprayed polls
over the p99 of all quiet ones (a baseline from the same run), and each round's own ratio. The
first spray phase includes the few attempts that are checked with bcrypt before the address
is limited.

``--from-many`` gives each spray request its own forged client address (a botnet), with
PIPELINE_PROXY_COUNT=1 so the server believes it: what the per-address limit cannot stop.
Prints one table (Markdown) to paste into docs/benchmarks.md. Never part of the test suite.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from base64 import b64encode
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from live import LiveServer  # noqa: E402

from webapp.accounts.users import hash_password  # noqa: E402
from webapp.core.store import PipelineStore  # noqa: E402


def make_database(folder: Path) -> tuple[Path, int]:
    path = folder / "sensor_data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, value REAL)")
    conn.commit()
    conn.close()
    with PipelineStore(path) as store:
        last = store.set("filtered", updated_by="bench", reason="benchmark data").change
    return path, last.id


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def poll(port, newest, duration, pause=0.02) -> list[float]:
    """Poll like a dashboard for ``duration`` seconds; return each answer's latency (ms)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"HX-Request": "true"}
    latencies = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection.request("GET", f"/poll?since={newest}", headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 204:
            raise SystemExit(f"/poll answered {response.status}")
        time.sleep(pause)
    connection.close()
    return latencies


def spray(port, go, stop, from_many, results):
    """While ``go`` is set, send wrong Basic credentials as fast as answers come; until ``stop``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"pipeline_type": "raw", "reason": "spray"})
    statuses = Counter()
    while not stop.is_set():
        if not go.wait(timeout=0.05):
            continue
        credentials = f"user-{secrets.token_hex(4)}:{secrets.token_hex(8)}".encode()
        headers = {
            "Authorization": "Basic " + b64encode(credentials).decode(),
            "Content-Type": "application/json",
        }
        if from_many:
            headers["X-Forwarded-For"] = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.7"
        try:
            connection.request("POST", "/api/pipeline", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
        except (ConnectionError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            statuses["reset"] += 1
    results.put(dict(statuses))


def summary(label, latencies) -> dict:
    return {
        "phase": label,
        "polls": len(latencies),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per phase")
    parser.add_argument("--sprayers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="quiet and spray phase pairs")
    parser.add_argument("--from-many", action="store_true", help="a new address per request")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="login-spray-"))
    db, newest = make_database(folder)
    users = folder / "users.htpasswd"
    users.write_text(f"alice:{hash_password(secrets.token_hex(8), rounds=12)}\n")
    env = {
        "PIPELINE_USERS_FILE": str(users),
        "PIPELINE_PROXY_COUNT": "1" if args.from_many else "0",
    }
    spawn = multiprocessing.get_context("spawn")
    go, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
    quiet, sprayed, rounds = [], [], []
    statuses = Counter()
    with LiveServer(db, workers=args.workers, env=env, log_path=folder / "gunicorn.log") as server:
        sprayers = [
            spawn.Process(target=spray, args=(server.port, go, stop, args.from_many, results))
            for _ in range(args.sprayers)
        ]
        for process in sprayers:
            process.start()
        poll(server.port, newest, 2.0)  # warm both workers up (and let the sprayers start)
        for number in range(1, args.rounds + 1):
            before = poll(server.port, newest, args.duration)
            go.set()
            during = poll(server.port, newest, args.duration)
            go.clear()
            time.sleep(0.2)  # answers in flight come back
            quiet += before
            sprayed += during
            rounds.append((number, before, during))
        quiet += poll(server.port, newest, args.duration)
        stop.set()
        for _ in sprayers:
            statuses.update(results.get(timeout=120))
        for process in sprayers:
            process.join(timeout=60)

    print(
        f"sprayers: {args.sprayers}, from many addresses: {args.from_many}, "
        f"workers: {args.workers}, rounds: {args.rounds} x {args.duration:g} s, "
        f"load average after: {os.getloadavg()[0]:.1f}"
    )
    print(f"spray answers: {dict(sorted(statuses.items(), key=str))}")
    print("\n| round | quiet p50 ms | quiet p99 ms | spray p50 ms | spray p99 ms | p99 ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for number, before, during in rounds:
        print(
            f"| {number} | {statistics.median(before):.2f} | {percentile(before, 0.99):.2f} | "
            f"{statistics.median(during):.2f} | {percentile(during, 0.99):.2f} | "
            f"{percentile(during, 0.99) / percentile(before, 0.99):.2f}× |"
        )
    ratio = percentile(sprayed, 0.99) / percentile(quiet, 0.99)
    print(
        f"| all ({len(quiet)} quiet, {len(sprayed)} sprayed polls) | "
        f"{statistics.median(quiet):.2f} | {percentile(quiet, 0.99):.2f} | "
        f"{statistics.median(sprayed):.2f} | {percentile(sprayed, 0.99):.2f} | **{ratio:.2f}×** |"
    )


if __name__ == "__main__":
    main()
