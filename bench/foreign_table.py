"""Benchmark: CPU per anonymous read on a 150 000-row table another tool made (no indexes of ours).

Three runs on the same file, in this order: reads with the bounds switched off (the behaviour
before issue 15.6: every filtered read, the operator list and the timeline scan the table),
reads as shipped (bounded to the newest ``SCAN_BOUND`` rows), then after ``pipeline-manager
migrate`` has added the indexes. Each route is requested anonymously through the Flask test
client (the worker's own cost, no network); the figure is the median CPU time (process time)
per request, and the ratio against the indexed run measured in the same run.

    .venv/bin/python bench/foreign_table.py [--rows 150000] [--repeat 7]
"""

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.core import bounded, queries, schema  # noqa: E402

TYPES = ("raw", "schematized", "filtered", "aggregated")
ROUTES = (
    "/",
    "/poll",
    "/timeline",
    "/history",
    "/history?pipeline_type=raw",
    "/history?operator=nobody",
    "/history?since=2026-01-10T00:00",
    "/history.csv?since=2026-01-10T00:00",
    "/history.csv?operator=nobody",
)


def build(path: Path, rows: int, operators: int) -> None:
    """A sensor database whose pipeline_config another tool filled: our columns, no indexes."""
    conn = sqlite3.connect(path)
    conn.execute(schema.SCHEMA)
    start = datetime.now(UTC) - timedelta(minutes=rows)
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
        "VALUES (?, ?, ?, '{}')",
        (
            (
                TYPES[i % 3] if i < rows - 1 else "raw",  # 'raw' is rare: a filter scans far
                (start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"),
                f"op{i % operators}",
            )
            for i in range(rows)
        ),
    )
    conn.commit()
    conn.close()


def cpu_per_route(path: Path, repeat: int) -> dict[str, float]:
    from webapp import create_app

    app = create_app({"TESTING": True, "DB": str(path), "SECRET_KEY": "bench" * 8})
    client = app.test_client()
    results = {}
    for route in ROUTES:
        assert client.get(route).status_code == 200, route  # warm
        samples = []
        for _ in range(repeat):
            started = time.process_time()
            response = client.get(route)
            response.get_data()
            samples.append(time.process_time() - started)
        results[route] = statistics.median(samples) * 1000
    return results


def unbounded():
    """Switch the bounds off: the reads as they were before issue 15.6."""
    queries.SCAN_FLOOR = "SELECT NULL"
    bounded.BoundedReads.indexed = lambda self: True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--operators", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sensor_data.db"
        build(path, args.rows, args.operators)
        saved = queries.SCAN_FLOOR, bounded.BoundedReads.indexed
        unbounded()
        before = cpu_per_route(path, args.repeat)
        queries.SCAN_FLOOR, bounded.BoundedReads.indexed = saved
        shipped = cpu_per_route(path, args.repeat)
        from webapp.core.migrate import migrate

        migrate(path)
        indexed = cpu_per_route(path, args.repeat)
    print(
        f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, load {os.getloadavg()[0]:.1f}; {args.rows} rows, "
        f"{args.operators} operators, median of {args.repeat}"
    )
    print()
    print(
        "| route (anonymous) | unbounded ms CPU | bounded ms CPU | indexed ms CPU "
        "| bounded/indexed |"
    )
    print("|---|---:|---:|---:|---:|")
    for route in ROUTES:
        ratio = shipped[route] / max(indexed[route], 0.01)
        print(
            f"| `{route}` | {before[route]:.1f} | {shipped[route]:.1f} | "
            f"{indexed[route]:.1f} | {ratio:.1f}x |"
        )


if __name__ == "__main__":
    main()
