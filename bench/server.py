"""Benchmark the app under gunicorn with wrk: pages and polls next to a bare endpoint.

    apt-get install -y wrk
    .venv/bin/python bench/server.py [--duration 10] [--connections 4] [--workers 2]

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
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from live import LiveServer  # noqa: E402

from webapp.store import PipelineStore  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_database(folder: Path) -> tuple[Path, int]:
    """Return a sensor database with a few changes, and the newest change id."""
    path = folder / "sensor_data.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, value REAL)")
    conn.executemany("INSERT INTO sensor_readings (value) VALUES (?)", [(n,) for n in range(1000)])
    conn.commit()
    conn.close()
    with PipelineStore(path) as store:
        for pipeline_type in ("schematized", "filtered", "aggregated", "filtered"):
            last = store.set(pipeline_type, updated_by="bench", reason="benchmark data").change
    return path, last.id


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    folder = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    db_path, newest = make_database(folder)
    endpoints = [
        ("dashboard page  GET /", "/", {}),
        ("poll, unchanged GET /poll?since=N", f"/poll?since={newest}", {"HX-Request": "true"}),
        ("API             GET /api/pipeline", "/api/pipeline", {}),
        ("API, unchanged  If-None-Match", "/api/pipeline", {"If-None-Match": f'"{newest}"'}),
        ("metrics         GET /metrics", "/metrics", {}),
        ("bare            GET /healthz", "/healthz", {}),
    ]
    # Access logs would measure the log pipe, not the app: keep gunicorn otherwise as configured.
    env = {"GUNICORN_CMD_ARGS": "--access-logfile /dev/null"}
    results = {}
    with LiveServer(db_path, workers=args.workers, env=env) as server:
        pids = worker_pids(server.process.pid)
        rss_before = {pid: rss_mib(pid) for pid in pids}
        for name, path, headers in endpoints:
            size = wire_bytes(server.port, path, headers)
            run_wrk(server.url + path, headers, argparse.Namespace(**{**vars(args), "duration": 1}))
            cpu = cpu_seconds(pids)
            stats = parse_wrk(run_wrk(server.url + path, headers, args))
            stats["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / max(stats["requests"], 1)
            stats["bytes"] = size
            results[name] = stats
        rss_after = {pid: rss_mib(pid) for pid in pids}
        assert pids == worker_pids(server.process.pid), "a worker restarted during the run"
    shutil.rmtree(folder, ignore_errors=True)
    report(results, args, rss_before, rss_after)


def report(results, args, rss_before, rss_after) -> None:
    print(
        f"gunicorn sync, {args.workers} workers; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s --latency; {os.cpu_count()} CPUs shared by wrk and gunicorn\n"
    )
    print("| endpoint | req/s | avg ms | p99 ms | worker CPU ms/req | bytes/answer | non-2xx/3xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in results.items():
        print(
            f"| {name} | {s['rate']:.0f} | {s['avg_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['cpu_ms']:.2f} | {s['bytes']} | {s['errors']} |"
        )
    bare = results["bare            GET /healthz"]["rate"]
    poll = results["poll, unchanged GET /poll?since=N"]["rate"]
    print(f"\npoll/bare requests/s ratio: {poll / bare:.2f} (target >= 0.7)")
    for pid in rss_before:
        print(f"worker {pid} RSS: {rss_before[pid]:.1f} MiB before, {rss_after[pid]:.1f} MiB after")


if __name__ == "__main__":
    main()
