"""Benchmark the app under gunicorn with wrk: pages and polls next to a bare endpoint.

    apt-get install -y wrk
    .venv/bin/python bench/server.py [--duration 5] [--rounds 3] [--connections 4] [--workers 2]

Starts gunicorn exactly as the image does (tests/live.py) on a temporary sensor database with a
few changes, then for each endpoint runs ``wrk --latency`` and reports requests/s, average and
p99 latency, the workers' CPU time per request (read from /proc: the server's own cost, without
wrk's), and the bytes of one answer on the wire. Ends with the poll/bare ratio and worker RSS.
"""

import argparse
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from live import LiveServer  # noqa: E402

from webapp.core.store import PipelineStore  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CHANGES = 30  # in the last minute: every one is drawn on both timelines


def make_database(folder: Path) -> tuple[Path, int]:
    """Return a sensor database with a few changes, and the newest change id."""
    path = folder / "sensor_data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, value REAL)")
    conn.executemany("INSERT INTO sensor_readings (value) VALUES (?)", [(n,) for n in range(1000)])
    conn.commit()
    conn.close()
    types = ("schematized", "filtered", "aggregated", "raw")
    with PipelineStore(path) as store:
        for n in range(CHANGES):
            last = store.set(types[n % 4], updated_by="bench", reason="benchmark data").change
    return path, last.id


def worker_pids(master_pid: int) -> list[int]:
    """Return the master's children, from each process's parent id in /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or gone meanwhile
        if entry.name.isdigit() and int(fields[1]) == master_pid:
            pids.append(int(entry.name))
    return sorted(pids)


def all_workers(master_pid: int, count: int, timeout=30.0) -> list[int]:
    """Return the worker pids once all ``count`` have forked (the first answers before the last)."""
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(master_pid)) < count:
        if time.monotonic() > deadline:
            sys.exit(f"only {len(pids)} of {count} workers started")
        time.sleep(0.05)
    return pids


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def wire_bytes(port: int, path: str, headers: dict) -> int:
    """Return the size of one full HTTP answer (status line, headers and body)."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return len(data)


def parse_wrk(output: str) -> dict:
    def seconds(value, unit):
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", output)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "rate": rate,
        "requests": requests,
        "avg_ms": seconds(*avg.groups()) * 1000,
        "p99_ms": seconds(*p99.groups()) * 1000,
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def run_wrk(url, headers, args) -> str:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    command += ["--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout


ENDPOINTS = {  # key: (label, path, headers); {newest} is the newest change id
    "page": ("dashboard page `GET /`", "/", {}),
    "poll": ("poll, unchanged `GET /poll?since=N`", "/poll?since={newest}", {"HX-Request": "true"}),
    "api": ("API `GET /api/pipeline`", "/api/pipeline", {}),
    "api304": (
        "API, unchanged (`If-None-Match`)",
        "/api/pipeline",
        {"If-None-Match": '"{newest}"'},
    ),
    "metrics": ("metrics `GET /metrics`", "/metrics", {}),
    "bare": ("bare `GET /healthz`", "/healthz", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per endpoint and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians kept)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    folder = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    db_path, newest = make_database(folder)
    endpoints = {
        key: (label, path.format(newest=newest), {k: v.format(newest=newest) for k, v in h.items()})
        for key, (label, path, h) in ENDPOINTS.items()
    }
    # Access logs would measure the log pipe, not the app: keep gunicorn otherwise as configured.
    env = {"GUNICORN_CMD_ARGS": "--access-logfile /dev/null"}
    runs = {key: [] for key in endpoints}
    with LiveServer(db_path, workers=args.workers, env=env) as server:
        pids = all_workers(server.process.pid, args.workers)
        warm_up = argparse.Namespace(**{**vars(args), "duration": 1})
        for _, path, headers in endpoints.values():
            run_wrk(server.url + path, headers, warm_up)
        rss_before = {pid: rss_mib(pid) for pid in pids}
        sizes = {key: wire_bytes(server.port, path, h) for key, (_, path, h) in endpoints.items()}
        # Interleaved rounds: a neighbour's load spike hits every endpoint, not only one.
        for _ in range(args.rounds):
            for key, (_, path, headers) in endpoints.items():
                cpu = cpu_seconds(pids)
                stats = parse_wrk(run_wrk(server.url + path, headers, args))
                stats["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / max(stats["requests"], 1)
                runs[key].append(stats)
        rss_after = {pid: rss_mib(pid) for pid in pids}
        now = worker_pids(server.process.pid)
        if now != pids:  # a restarted worker would make the CPU and RSS figures meaningless
            sys.exit(f"workers changed {pids} -> {now}:\n{server.log()[-3000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    medians = {
        key: {field: statistics.median(run[field] for run in results) for field in results[0]}
        for key, results in runs.items()
    }
    report(endpoints, medians, sizes, args, rss_before, rss_after)


def report(endpoints, medians, sizes, args, rss_before, rss_after) -> None:
    print(
        f"gunicorn gthread, {args.workers} workers; "
        f"wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s --latency; median of {args.rounds} interleaved rounds; "
        f"{os.cpu_count()} CPUs shared by wrk and gunicorn\n"
    )
    print("| endpoint | req/s | avg ms | p99 ms | worker CPU ms/req | bytes/answer | non-2xx/3xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, (label, _, _) in endpoints.items():
        s = medians[key]
        print(
            f"| {label} | {s['rate']:.0f} | {s['avg_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['cpu_ms']:.2f} | {sizes[key]} | {s['errors']:.0f} |"
        )
    poll, bare = medians["poll"], medians["bare"]
    print(f"\npoll/bare requests/s: {poll['rate'] / bare['rate']:.2f} (target >= 0.7)")
    print(f"bare/poll worker CPU per request: {bare['cpu_ms'] / poll['cpu_ms']:.2f}")
    for pid in rss_before:
        print(
            f"worker {pid} RSS: {rss_before[pid]:.1f} MiB after warm-up, "
            f"{rss_after[pid]:.1f} MiB at the end"
        )


if __name__ == "__main__":
    main()
