"""Benchmark: every page, read and export costs the same with 1 000 or 1 000 000 changes.

Builds databases of 1 000, 100 000 and 1 000 000 changes (``--sizes``), then for each route (the
Flask app in process, through its test client: the worker's own cost, no network) and each CLI
command (a fresh ``pipeline-manager`` process) prints the median time per size and the ratio of
the largest size to the smallest (target ≤ 2× for every route). Then the exports at the largest
size: time to the first bytes, total time, peak RSS of the exporting process, and CPU per row
against a bare loop that reads the same rows with ``sqlite3`` and writes them with
``csv.writer`` in the same run (target ≤ 2×, RSS ≤ 100 MB).

    .venv/bin/python bench/scale.py [--sizes 1000,100000,1000000] [--repeat 15]
"""

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = ("raw", "schematized", "filtered", "aggregated")
OPERATORS = ("alice", "bob", "carol", "ci-bot", "rollout")


def build(path: Path, count: int) -> None:
    """Write ``count`` changes a minute apart, ending now, like years of automated rollouts."""
    from webapp.core.store import PipelineStore

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, value REAL)")
    conn.commit()
    conn.close()
    with PipelineStore(path) as store:
        store.initialize()  # the seed table and our indexes, as our first write leaves them
    start = datetime.now(UTC) - timedelta(minutes=count)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    rows = (
        (
            TYPES[n % 4],
            (start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S.000"),
            OPERATORS[n % 5] if n != count // 2 else "rare-operator",
            json.dumps(
                {
                    "reason": f"rollout wave {n} of the fleet",
                    "previous": TYPES[(n - 1) % 4] if n else None,
                    "previous_id": n or None,
                    "source": "cli",
                }
            ),
        )
        for n in range(count)
    )
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def routes(count: int) -> list[tuple[str, str]]:
    """Return (label, path) for every route and filter, with cursors valid at ``count``."""
    deep = count // 2
    middle = (datetime.now(UTC) - timedelta(minutes=count // 2)).strftime("%Y-%m-%dT%H:%M")
    middle_end = (datetime.now(UTC) - timedelta(minutes=count // 2 - 60)).strftime("%Y-%m-%dT%H:%M")
    return [
        ("/", "/"),
        ("/history (first page)", "/history"),
        ("/history (deep page)", f"/history?before={deep}"),
        ("/history?pipeline_type", "/history?pipeline_type=filtered"),
        ("/history?operator (common)", "/history?operator=bob"),
        ("/history?operator (rare)", "/history?operator=rare-operator"),
        ("/history?since&until (old hour)", f"/history?since={middle}&until={middle_end}"),
        ("/timeline", "/timeline"),
        ("/poll (unchanged, 204)", f"/poll?since={count}"),
        ("/poll (changed)", f"/poll?since={count - 1}"),
        ("/api/pipeline", "/api/pipeline"),
        ("/api/history", "/api/history?limit=20"),
        ("/api/history (deep)", f"/api/history?limit=20&before={deep}"),
        ("/metrics", "/metrics"),
    ]


def time_routes(path: Path, count: int, repeat: int) -> dict[str, float]:
    """Return the median ms per route for the database at ``path`` (app in process)."""
    from webapp import create_app

    app = create_app({"TESTING": True, "DB": str(path), "SECRET_KEY": "bench"})
    client = app.test_client()
    medians = {}
    for label, url in routes(count):
        status = client.get(url).status_code  # warm: connection, templates, caches
        assert status in (200, 204), (url, status)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            response.get_data()
            times.append((time.perf_counter() - started) * 1000)
        medians[label] = statistics.median(times)
    return medians


def time_commands(path: Path, repeat: int) -> dict[str, float]:
    manager = str(Path(sys.executable).parent / "pipeline-manager")
    commands = {
        "pipeline-manager get": [manager, "--db", str(path), "get"],
        "pipeline-manager history --limit 20": [manager, "--db", str(path), "history"],
    }
    medians = {}
    for label, command in commands.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append((time.perf_counter() - started) * 1000)
        medians[label] = statistics.median(times)
    return medians


EXPORT_CHILD = r"""
import resource, sys, time
kind, db = sys.argv[1], sys.argv[2]


class Sink:
    # Counts what is written (to /dev/null) and notes when the first bytes came.
    def __init__(self):
        self.out, self.first = open("/dev/null", "w"), None

    def write(self, text):
        if self.first is None:
            self.first = time.perf_counter()
        return self.out.write(text)

    def flush(self):
        pass


sink = Sink()
if kind == "bare":
    import csv, sqlite3
    conn = sqlite3.connect(db)
    writer = csv.writer(sink)
    query = (
        "SELECT id, pipeline_type, updated_at, updated_by, metadata FROM pipeline_config "
        "ORDER BY id DESC"
    )
    started, cpu = time.perf_counter(), time.process_time()
    for row in conn.execute(query):
        writer.writerow(row)
elif kind.startswith("web-"):
    from webapp import create_app
    app = create_app({"TESTING": True, "DB": db, "SECRET_KEY": "bench"})
    client = app.test_client()
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get("/history." + kind[4:], buffered=False)
    assert response.status_code == 200, response.status_code
    for chunk in response.response:
        sink.write(chunk.decode() if isinstance(chunk, bytes) else chunk)
    response.close()
else:
    from webapp.cli.pipeline import main
    sys.stdout = sink
    started, cpu = time.perf_counter(), time.process_time()
    try:
        main(["--db", db, "history", "--all", "--format", kind[4:]])
    except SystemExit as end:
        assert not end.code, end.code
    sys.stdout = sys.__stdout__
cpu, total = time.process_time() - cpu, time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(sink.first - started, total, cpu, peak)
"""


def export_figures(path: Path, count: int) -> list[tuple[str, float, float, float, float]]:
    """Return (label, first bytes s, total s, CPU µs per row, peak RSS MB) per export."""
    figures = []
    cases = [
        ("bare sqlite3 + csv.writer loop", "bare"),
        ("/history.csv", "web-csv"),
        ("/history.json", "web-json"),
        ("pipeline-manager history --all --format csv", "cli-csv"),
        ("pipeline-manager history --all --format json", "cli-json"),
    ]
    for label, kind in cases:
        result = subprocess.run(
            [sys.executable, "-c", EXPORT_CHILD, kind, str(path)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        first, total, cpu, peak = map(float, result.stdout.split())
        figures.append((label, first, total, cpu * 1e6 / count, peak))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    load = os.getloadavg()[0]
    results, commands = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for size in sizes:
            paths[size] = Path(folder) / f"changes-{size}.db"
            started = time.perf_counter()
            build(paths[size], size)
            print(f"built {size:,} changes in {time.perf_counter() - started:.1f} s", flush=True)
        for size in sizes:
            results[size] = time_routes(paths[size], size, args.repeat)
            commands[size] = time_commands(paths[size], max(5, args.repeat // 3))
        exports = export_figures(paths[sizes[-1]], sizes[-1])

    small, large = sizes[0], sizes[-1]
    print()
    print(
        f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, load average {load:.2f} before, {os.getloadavg()[0]:.2f} "
        f"after; median of {args.repeat} requests per route (app in process)"
    )
    print()
    header = " | ".join(f"{size:,} ms" for size in sizes)
    print(f"| route or command | {header} | {large:,} : {small:,} |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    worst = 0.0
    for table in (results, commands):
        for label in table[small]:
            values = [table[size][label] for size in sizes]
            ratio = values[-1] / values[0]
            worst = max(worst, ratio)
            cells = " | ".join(f"{value:.2f}" for value in values)
            print(f"| `{label}` | {cells} | {ratio:.2f}× |")
    print()
    verdict = "met" if worst <= 2 else "MISSED"
    print(f"target ≤ 2× for every route and command: {verdict} (worst {worst:.2f}×)")
    print()
    print(f"Exports of {large:,} changes:")
    print()
    print("| export | first bytes s | total s | CPU µs per row | × bare loop | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    bare_cpu = exports[0][3]
    for label, first, total, cpu_per_row, peak in exports:
        print(
            f"| `{label}` | {first:.3f} | {total:.1f} | {cpu_per_row:.1f} | "
            f"{cpu_per_row / bare_cpu:.2f}× | {peak:.0f} |"
        )


if __name__ == "__main__":
    main()
