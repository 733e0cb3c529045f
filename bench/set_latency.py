"""Benchmark: set latency (p50/p99) and throughput with 1, 4 and 8 writer processes.

A sensor writer process inserts readings throughout (a transaction of 10 readings every
--sensor-pause seconds). Each pipeline writer sets in a loop for --seconds, with a unique reason
per set and the default write budget (PIPELINE_WRITE_TIMEOUT, 10 s). Afterwards every
acknowledged change is looked up by reason: it must be stored exactly once (zero lost changes),
and no set may have failed. Targets: zero failures, zero lost changes.

    .venv/bin/python bench/set_latency.py [--writers 1 4 8] [--seconds 5] [--sensor-pause 0.01]
                                          [--set-pause 0]   # 0: closed loop, as fast as possible
"""

import argparse
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = ("raw", "schematized", "filtered", "aggregated")


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def writer(path, name, seconds, write_timeout, set_pause, barrier, results):
    from webapp.core.store import PipelineStore

    latencies, acks, failures = [], [], []
    rng = random.Random(name)
    store = PipelineStore(path, write_timeout=write_timeout)
    store.current()  # open the connection before the clock starts
    barrier.wait()
    deadline = time.monotonic() + seconds
    last, i = None, 0
    while time.monotonic() < deadline:
        reason = f"{name}-{i}"
        choice = rng.choice([t for t in TYPES if t != last])
        started = time.perf_counter()
        try:
            result = store.set(choice, updated_by=name, reason=reason, source="cli")
        except Exception:
            failures.append(traceback.format_exc(limit=1).strip().splitlines()[-1])
        else:
            latencies.append(time.perf_counter() - started)
            acks.append((result.change.id, reason, result.changed))
            last = result.change.pipeline_type
        i += 1
        if set_pause:
            time.sleep(set_pause)
    store.close()
    results.put((name, latencies, acks, failures))


def sensor(path, pause, barrier, stop, results):
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    barrier.wait()
    transactions, commit_times, errors = 0, [], []
    while not stop.wait(pause):
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO sensor_readings (sensor_id, value, recorded_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                [(f"s-{n}", random.random()) for n in range(10)],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            errors.append(str(error))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            continue
        transactions += 1
        commit_times.append(time.perf_counter() - started)
    conn.close()
    results.put(("sensor", transactions, commit_times, errors))


def make_database(folder):
    path = Path(folder) / "sensor_data.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "sensor_id TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL)"
    )
    conn.commit()
    conn.close()
    return path


def stored_reasons(path):
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, metadata FROM pipeline_config").fetchall()
    conn.close()
    found = {}
    for row_id, metadata in rows:
        found.setdefault(json.loads(metadata)["reason"], []).append(row_id)
    return found, len(rows)


def run(writers, seconds, sensor_pause, write_timeout, set_pause):
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        path = str(make_database(folder))
        barrier, stop, results = ctx.Barrier(writers + 1), ctx.Event(), ctx.Queue()
        processes = [
            ctx.Process(
                target=writer,
                args=(path, f"w{n}", seconds, write_timeout, set_pause, barrier, results),
            )
            for n in range(writers)
        ]
        processes.append(
            ctx.Process(target=sensor, args=(path, sensor_pause, barrier, stop, results))
        )
        for process in processes:
            process.start()
        reports = [results.get() for _ in range(writers)]
        stop.set()
        sensor_report = results.get()
        for process in processes:
            process.join()
        latencies = [lat for _, lats, _, _ in reports for lat in lats]
        acks = [ack for _, _, acks, _ in reports for ack in acks]
        failures = [f for _, _, _, fails in reports for f in fails]
        found, rows = stored_reasons(path)
        changed = [(row_id, reason) for row_id, reason, was_changed in acks if was_changed]
        lost = sum(1 for row_id, reason in changed if found.get(reason) != [row_id])
        extra = rows - len(changed)  # rows nobody acknowledged (or duplicates)
        conn = sqlite3.connect(path)
        integrity = conn.execute("PRAGMA integrity_check").fetchall()[0][0]
        conn.close()
    _, sensor_txns, sensor_commits, sensor_errors = sensor_report
    return {
        "writers": writers,
        "sets": len(latencies),
        "changed": len(changed),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "throughput": len(latencies) / seconds,
        "failures": len(failures),
        "failure_kinds": sorted(set(failures)),
        "lost": lost,
        "extra": extra,
        "integrity": integrity,
        "sensor_txns": sensor_txns,
        "sensor_p99_ms": percentile(sensor_commits, 0.99) * 1000,
        "sensor_max_ms": max(sensor_commits, default=float("nan")) * 1000,
        "sensor_errors": len(sensor_errors),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sensor-pause", type=float, default=0.01)
    parser.add_argument("--write-timeout", type=float, default=10.0)
    parser.add_argument(
        "--set-pause", type=float, default=0.0, help="each writer sleeps this long between sets"
    )
    args = parser.parse_args()
    print(
        f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {args.seconds:g} s per row; sensor writer: "
        f"10 readings per transaction every {args.sensor_pause:g} s; "
        f"write budget {args.write_timeout:g} s; pause between sets {args.set_pause:g} s; "
        "synchronous=FULL, WAL"
    )
    print()
    print(
        "| writers | sets | changed | p50 ms | p99 ms | max ms | sets/s | failures | lost "
        "| unacked rows | integrity | sensor txns | sensor p99 ms | sensor max ms |"
    )
    print("|" + "---:|" * 14)
    results = []
    for writers in args.writers:
        r = run(writers, args.seconds, args.sensor_pause, args.write_timeout, args.set_pause)
        results.append(r)
        print(
            f"| {r['writers']} | {r['sets']} | {r['changed']} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['throughput']:.0f} | {r['failures']} "
            f"| {r['lost']} | {r['extra']} | {r['integrity']} | {r['sensor_txns']} "
            f"| {r['sensor_p99_ms']:.1f} | {r['sensor_max_ms']:.1f} |",
            flush=True,
        )
    print()
    for r in results:
        for kind in r["failure_kinds"]:
            print(f"failure with {r['writers']} writers: {kind}")
    met = all(r["failures"] == 0 and r["lost"] == 0 and r["extra"] == 0 for r in results)
    print(f"target zero failures, zero lost changes: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
