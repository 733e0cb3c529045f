"""Benchmark: what an active rollout costs the centre, SQLite and PostgreSQL in the same run.

(a) Ingest: signed heartbeats from ``--nodes`` distinct nodes through the report route (Flask's
    test client, in process), without a rollout, then with a running rollout over every node
    (each report: the indexed lookup, and a desire in the answer: the costliest steady path).
    Samples alternate between a store without a rollout and one with it, so drift in the
    machine's load hits both alike; the figure is the ratio of medians (target ≤ 1.2).
(b) Rollout reads: the rollout's API object, its page (with the nodes holding its wave), its
    poll (changed and unchanged) and a page of its pending nodes, on a store of ``--small`` and
    one of ``--large`` nodes with a running one-wave rollout over all of them (every node
    pending: the worst case); the ratio must stay ≤ 2.

    .venv/bin/python bench/rollouts.py [--nodes 10000] [--small 1000] [--large 100000]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
os.chdir(ROOT)

from fleet import node_body, node_name, seed  # noqa: E402  (bench/fleet.py)
from fleetlib import FLEET_SECRET, REPORT_URL  # noqa: E402
from pglib import PostgresServer  # noqa: E402
from weblib import basic, write_users  # noqa: E402

from webapp.accounts.signatures import derive_node_key, new_message_id, sign  # noqa: E402

ROLLOUTS = "/api/fleet/rollouts"


def centre(setting: str, tmp: Path):
    from webapp.fleet import create_app

    return create_app(
        {
            "TESTING": True,
            "FLEET_DB": setting,
            "FLEET_SECRET": FLEET_SECRET,
            "SECRET_KEY": "bench",
            "STATE_DIR": str(tmp / "state"),
            "USERS_FILE": str(write_users(tmp / "users.htpasswd")),
            "LOGIN_THROTTLE_DIR": str(tmp / "throttle"),
        }
    )


def start_rollout(client, waves) -> dict:
    made = client.post(
        ROLLOUTS,
        json={"pipeline_type": "aggregated", "reason": "bench", "waves": waves},
        headers=basic(),
    )
    assert made.status_code == 201, made.json
    started = client.post(
        f"{ROLLOUTS}/{made.json['id']}/start",
        headers={**basic(), "If-Match": made.headers["ETag"]},
    )
    assert started.status_code == 200, started.json
    return started.json


def one_report(client, n: int, seq: int) -> float:
    body = node_body(n, seq)  # as seeded: a quarter already run the target (taken at the start)
    body["accept_rollouts"] = True
    data = json.dumps(body).encode()
    headers = sign(
        derive_node_key(FLEET_SECRET, node_name(n)), new_message_id(), int(time.time()), data
    )
    started = time.perf_counter()
    answer = client.post(
        REPORT_URL, data=data, headers={**headers, "Content-Type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"report: {answer.status_code} {answer.data[:200]!r}")
    return elapsed, "desired" in answer.json


def ingest_cost(backend: str, nodes: int, samples: int, tmp: Path, pg) -> dict:
    settings = [
        str(tmp / f"{name}.db") if backend == "sqlite" else pg.database()
        for name in ("plain", "rollout")
    ]
    for setting in settings:
        seed(setting, nodes)
    plain, rolled = (centre(s, tmp).test_client() for s in settings)
    rollout = start_rollout(rolled, ["100%"])
    times = {"without": [], "with": []}
    delivered = 0
    for k in range(samples):
        n = (k * 7919) % nodes  # distinct nodes, spread over the fleet
        for name, client in (("without", plain), ("with", rolled)):
            elapsed, desired = one_report(client, n, 10 + k)
            times[name].append(elapsed * 1000)
            delivered += desired and name == "with"
    medians = {name: statistics.median(values[20:]) for name, values in times.items()}
    return {
        "rollout": rollout["id"],
        "without_ms": medians["without"],
        "with_ms": medians["with"],
        "ratio": medians["with"] / medians["without"],
        "desires": delivered,
    }


READS = ("api", "page", "poll changed", "poll unchanged", "nodes")


def read_costs(backend: str, size: int, repeat: int, tmp: Path, pg) -> dict:
    setting = str(tmp / f"reads-{size}.db") if backend == "sqlite" else pg.database()
    seed(setting, size)
    client = centre(setting, tmp).test_client()
    rollout = start_rollout(client, ["100%"])  # the worst case: the whole fleet pending at once
    if backend == "postgresql":  # what autovacuum does within a minute of a bulk load
        pg.psql("ANALYZE", setting.rsplit("/", 1)[1])
    base = f"/rollouts/{rollout['id']}"
    version = client.get(f"{ROLLOUTS}/{rollout['id']}").json["version"]
    urls = {
        "api": f"{ROLLOUTS}/{rollout['id']}",
        "page": base,
        "poll changed": f"{base}/poll?since=0",
        "poll unchanged": f"{base}/poll?since={version}",
        "nodes": f"{ROLLOUTS}/{rollout['id']}/nodes?wave=1&status=pending&limit=50",
    }
    costs = {}
    for name in READS:
        samples = []
        for i in range(repeat + 3):
            started = time.perf_counter()
            answer = client.get(
                urls[name], headers={"HX-Request": "true"} if "poll" in name else {}
            )
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code not in (200, 204):
                raise SystemExit(f"{name}: {answer.status_code} {answer.data[:200]!r}")
            if i >= 3:
                samples.append(elapsed)
        costs[name] = statistics.median(samples)
    return costs


def ingest_figures(backend, args, tmp, pg) -> None:
    cost = ingest_cost(backend, args.nodes, args.samples, tmp, pg)
    print(
        f"\n{backend}: report without a rollout {cost['without_ms']:.2f} ms, with a running "
        f"rollout over {args.nodes} nodes {cost['with_ms']:.2f} ms (ratio {cost['ratio']:.2f}; "
        f"{cost['desires']} desires answered)",
        flush=True,
    )


def read_figures(backend, args, tmp, pg) -> None:
    costs = {
        size: read_costs(backend, size, args.repeat, tmp, pg) for size in (args.small, args.large)
    }
    print(
        f"\n| {backend} rollout read | {args.small} nodes (ms) | {args.large} nodes (ms) | ratio |"
    )
    print("|---|---:|---:|---:|")
    for name in READS:
        small, large = costs[args.small][name], costs[args.large][name]
        print(f"| {name} | {small:.2f} | {large:.2f} | {large / small:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--skip", choices=("ingest", "reads"), default=None)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} cores, load {load:.1f}, Python {platform.python_version()}")
    pg = PostgresServer().start() if "postgresql" in args.backends else None
    try:
        for backend in args.backends.split(","):
            with tempfile.TemporaryDirectory(prefix="rollout-bench-") as directory:
                tmp = Path(directory)
                if args.skip != "ingest":
                    ingest_figures(backend, args, tmp, pg)
                if args.skip != "reads":
                    read_figures(backend, args, tmp, pg)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
