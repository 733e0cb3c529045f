"""The fleet store's reads: filters, keyset pages, maintained counts, stale at read time, the mix
and the fleet version, on SQLite and PostgreSQL."""

import itertools
import random
import threading
import time
from collections import Counter

import pytest
from fleetlib import record, report

from webapp.core.errors import InvalidInput
from webapp.fleet.filters import NodeFilter, parse_selector
from webapp.fleet.report import read_report

_seq = itertools.count(1)


def put(
    store,
    name,
    pipeline_type="raw",
    change_id=1,
    *,
    labels=None,
    error=False,
    ago_s=0,
    interval_s=60,
):
    """Ingest one report for ``name`` as if received ``ago_s`` seconds ago."""
    current = (
        {"error": {"code": 5, "message": "busy"}} if error else record(change_id, pipeline_type)
    )
    body = report(name, current=current, labels=labels, interval_s=interval_s, seq=next(_seq))
    moment = int(time.time() * 1000) - ago_s * 1000
    return store.ingest(read_report(body), f"msg_{next(_seq)}", int(time.time()), moment)


def all_pages(store, node_filter=None, limit=50):
    names, after, pages = [], None, 0
    while True:
        page = store.nodes(node_filter, limit, after)
        names += [node.name for node in page.nodes]
        pages += 1
        if page.next_cursor is None:
            return names, pages
        after = page.next_cursor


def test_keyset_pages_cover_every_node_once_in_name_order(fleet_store):
    names = [f"edge-{n:03d}" for n in range(120)] + ["Zeta", "alpha", "a.b", "a-b", "a@b"]
    for name in names:
        put(fleet_store, name)
    listed, pages = all_pages(fleet_store)
    assert listed == sorted(names)  # byte order on both backends ("Zeta" before "alpha")
    assert pages == 3


def test_filters_select_by_labels_type_state_and_prefix(fleet_store):
    put(fleet_store, "edge-1", "raw", labels={"region": "eu", "site": "berlin"})
    put(fleet_store, "edge-2", "filtered", labels={"region": "eu", "site": "paris"})
    put(fleet_store, "edge-10", "raw", labels={"region": "us"})
    put(fleet_store, "gate-1", "raw", labels={"region": "eu", "site": "berlin"}, ago_s=3600)
    put(fleet_store, "edge-3", "raw", labels={"region": "eu"})
    put(fleet_store, "edge-3", "raw", labels={"region": "eu"}, error=True)  # keeps its type

    def names(**args):
        return all_pages(fleet_store, NodeFilter.from_args(args))[0]

    assert names(selector="region=eu,site=berlin") == ["edge-1", "gate-1"]
    assert names(selector="region=eu", pipeline_type="raw") == ["edge-1", "edge-3", "gate-1"]
    assert names(state="stale") == ["gate-1"]
    assert names(state="error") == ["edge-3"]
    assert names(name_prefix="edge-1") == ["edge-1", "edge-10"]
    assert names(name_prefix="edge-1", selector="region=us") == ["edge-10"]
    assert names(selector="region=mars") == []


@pytest.mark.parametrize(
    "args",
    [
        {"state": "asleep"},
        {"selector": "region"},
        {"selector": "Region=eu"},
        {"selector": "region=e\u202eu"},
        {"selector": "a=1,a=2"},
        {"name_prefix": "x\x00"},
    ],
)
def test_bad_filters_are_one_line_errors(args):
    with pytest.raises(InvalidInput):
        NodeFilter.from_args(args)


def test_selector_round_trips_through_the_query_string():
    node_filter = NodeFilter.from_args({"selector": "region=eu, site=berlin", "state": "stale"})
    assert node_filter.selector == parse_selector("region=eu,site=berlin")
    assert NodeFilter.from_args(node_filter.to_args()) == node_filter


def brute_force(store):
    """Count what the node list shows, the slow way, to check the maintained counts."""
    nodes = list(store.iter_nodes())
    labels = Counter((k, v) for node in nodes for k, v in node.labels.items())
    return (
        len(nodes),
        Counter(node.pipeline_type for node in nodes),
        Counter(node.state for node in nodes),
        labels,
    )


def test_maintained_counts_match_the_nodes_after_random_reports(fleet_store):
    rng = random.Random(17)
    types = ["raw", "filtered", "aggregated", "other-tool"]
    for step in range(150):
        name = f"edge-{rng.randrange(25)}"
        labels = {"region": rng.choice(["eu", "us"]), "rack": str(rng.randrange(3))}
        put(
            fleet_store,
            name,
            rng.choice(types),
            step + 1,
            labels=labels,
            error=rng.random() < 0.1,
            ago_s=rng.choice([0, 0, 0, 900]),
        )
    summary = fleet_store.summary()
    total, by_type, by_state, labels = brute_force(fleet_store)
    assert summary["nodes"] == total
    assert {k: v for k, v in summary["by_type"].items() if v} == {
        k: v for k, v in by_type.items() if k != "other-tool"
    }
    assert summary["unmanaged"] == (
        {"other-tool": by_type["other-tool"]} if by_type["other-tool"] else {}
    )
    assert {k: v for k, v in summary["by_state"].items() if v} == dict(by_state)
    flat = {(k, v): n for k, values in summary["by_label"].items() for v, n in values.items()}
    assert flat == dict(labels)


def test_a_silent_node_turns_stale_at_read_time_and_back(fleet_store):
    put(fleet_store, "edge-1", ago_s=181, interval_s=60)  # 3 × 60 s ago, and a second
    put(fleet_store, "edge-2", ago_s=179, interval_s=60)
    version = fleet_store.version()  # the sweep ran: edge-1 counted stale
    assert fleet_store.node("edge-1").state == "stale"
    assert fleet_store.summary()["by_state"] == {"reporting": 1, "stale": 1, "error": 0}
    put(fleet_store, "edge-1")
    assert fleet_store.node("edge-1").state == "reporting"
    assert fleet_store.version() > version
    assert fleet_store.summary()["by_state"]["stale"] == 0


def test_the_version_moves_on_changes_not_on_heartbeats(fleet_store):
    put(fleet_store, "edge-1", "raw", 1)
    version = fleet_store.version()
    put(fleet_store, "edge-1", "raw", 1)
    assert fleet_store.version() == version
    put(fleet_store, "edge-1", "filtered", 2)
    assert fleet_store.version() == version + 1
    put(fleet_store, "edge-1", "filtered", 2, labels={"region": "us"})
    assert fleet_store.version() == version + 2
    put(fleet_store, "edge-1", "filtered", 2, labels={"region": "us"}, error=True)
    assert fleet_store.version() == version + 3


def test_the_mix_counts_nodes_per_type_per_day(fleet_store):
    put(fleet_store, "edge-1", "raw", 1, ago_s=86_400)
    put(fleet_store, "edge-1", "raw", 1)
    put(fleet_store, "edge-2", "raw", 1)
    put(fleet_store, "edge-2", "filtered", 2)
    put(fleet_store, "edge-2", "filtered", 2)
    days = fleet_store.mix(7)
    assert len(days) == 7
    assert days[-1].by_type == {"raw": 2, "filtered": 1}
    assert days[-2].by_type == {"raw": 1}
    assert all(day.by_type == {} for day in days[:-2])


def test_concurrent_first_reports_are_each_counted_once(fleet_store):
    errors = []

    def worker(start):
        try:
            for n in range(start, start + 15):
                put(fleet_store, f"edge-{n:03d}", "raw", labels={"region": "eu"})
                put(fleet_store, "shared", "raw", n + 1)  # one row many threads update
        except Exception as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k * 15,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    summary = fleet_store.summary()
    assert summary["nodes"] == 91
    assert summary["by_label"] == {"region": {"eu": 91}}


def test_bulk_import_and_recount_agree_with_ingest(fleet_store):
    from webapp.fleet.engine import run_write
    from webapp.fleet.store_bulk import import_new_nodes, recount

    for n in range(30):
        put(
            fleet_store,
            f"edge-{n:03d}",
            ("raw", "filtered")[n % 2],
            labels={"rack": str(n % 3)},
            error=n % 7 == 0,
        )
    by_ingest = fleet_store.summary()
    run_write(fleet_store.engine, recount)  # rebuilt from the node table: the same counts
    assert {**fleet_store.summary(), "version": 0} == {**by_ingest, "version": 0}
    now = int(time.time() * 1000)
    items = [
        (read_report(report(f"bulk-{n:03d}", labels={"rack": "9"})), f"m{n}", 1, now)
        for n in range(700)
    ]
    assert import_new_nodes(fleet_store.engine, items) == 700
    summary = fleet_store.summary()
    assert summary["nodes"] == 730 and summary["by_label"]["rack"]["9"] == 700
    assert brute_force(fleet_store)[0] == 730
    assert all_pages(fleet_store, NodeFilter.from_args({"selector": "rack=9"}))[0][0] == "bulk-000"
