"""Benchmark: the uploader's read (active_pipeline) vs a bare single-row SELECT.

Both run on the same warm connection (from connect_uploader) against a sensor-like database with
a filled pipeline_config table. Prints ns/call (min and median of many timeit repeats) and the
ratio; the target is ratio ≤ 2.

    .venv/bin/python bench/uploader_read.py [--rows 1000] [--repeat 50] [--number 20000]
"""

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.core.store import PipelineStore  # noqa: E402
from webapp.uploader import active_pipeline, connect_uploader  # noqa: E402

BARE_SQL = "SELECT pipeline_type FROM pipeline_config ORDER BY id DESC LIMIT 1"


def make_database(folder, rows):
    path = Path(folder) / "sensor_data.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "sensor_id TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO sensor_readings (sensor_id, value, recorded_at) VALUES (?, ?, ?)",
        ((f"s-{i % 20}", i * 0.1, "2026-11-25T00:00:00Z") for i in range(10_000)),
    )
    conn.commit()
    conn.close()
    types = ("filtered", "aggregated", "schematized", "raw")
    with PipelineStore(path) as store:
        for i in range(rows):
            store.set(types[i % 4], updated_by="bench", reason=f"row {i}")
    return path


def measure(statement, namespace, repeat, number):
    timings = timeit.repeat(statement, globals=namespace, repeat=repeat, number=number)
    per_call = [t / number * 1e9 for t in timings]
    return min(per_call), statistics.median(per_call)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="pipeline_config rows")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = make_database(folder, args.rows)
        conn = connect_uploader(path)
        namespace = {"conn": conn, "active_pipeline": active_pipeline, "SQL": BARE_SQL}
        # Warm up: statement cache, page cache, WAL index.
        for _ in range(10_000):
            active_pipeline(conn)
            conn.execute(BARE_SQL).fetchall()
        cases = [
            ("bare conn.execute(SELECT ...).fetchall()", "conn.execute(SQL).fetchall()"),
            ("active_pipeline(conn)", "active_pipeline(conn)"),
        ]
        results = {}
        # Interleave the two cases so drift on a shared machine hits both alike.
        rounds = 5
        samples = {label: [] for label, _ in cases}
        for _ in range(rounds):
            for label, statement in cases:
                samples[label].append(
                    measure(statement, namespace, max(1, args.repeat // rounds), args.number)
                )
        for label, _ in cases:
            results[label] = (
                min(s[0] for s in samples[label]),
                statistics.median(s[1] for s in samples[label]),
            )
        conn.close()

    bare_median = results[cases[0][0]][1]
    print(
        f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    print(
        f"database: {args.rows} pipeline_config rows, 10000 sensor rows, WAL; "
        f"timeit {args.repeat} repeats x {args.number} calls"
    )
    print()
    print("| read | min ns/call | median ns/call | ratio (median) |")
    print("|---|---:|---:|---:|")
    for label, _ in cases:
        low, median = results[label]
        print(f"| {label} | {low:,.0f} | {median:,.0f} | {median / bare_median:.2f}x |")
    ratio = results[cases[1][0]][1] / bare_median
    print()
    print(f"target ≤ 2.00x: {'met' if ratio <= 2 else 'MISSED'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
