"""The centre under a real gunicorn (2 workers) on SQLite and PostgreSQL: an empty store created
once while both workers race for it, concurrent signed reports from distinct nodes all stored,
answers signed, and /metrics summing both workers."""

import json
import threading
import time

import pytest
from fleetlib import FLEET_SECRET, REPORT_URL, FleetServer, record, report, signed
from live import metric, request
from pglib import store_setting

from webapp.accounts.signatures import derive_node_key, verify

pytestmark = pytest.mark.slow

NODES = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store(request, tmp_path):
    yield from store_setting(request.param, request, tmp_path, migrated=False)


def test_two_workers_store_every_report_from_concurrent_nodes(empty_store, tmp_path):
    answers, failures = [], []

    def node(number):
        name = f"edge-{number:03d}"
        body = report(
            name, current=record(1), changes=[record(1)], labels={"rack": str(number % 4)}
        )
        data, headers = signed(body)
        try:
            answers.append((name, request(server.url + REPORT_URL, data=data, headers=headers)))
        except OSError as error:  # reported below, never lost in a thread
            failures.append(error)

    with FleetServer(empty_store, tmp_path / "state.db") as server:
        # The first requests reach both workers while neither has created the schema yet.
        threads = [threading.Thread(target=node, args=(n,)) for n in range(NODES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        assert sorted(status for _, (status, _, _) in answers) == [200] * NODES, server.log()
        for name, (_, headers, body) in answers:
            verify(derive_node_key(FLEET_SECRET, name), dict(headers), body.encode(), time.time())
            assert json.loads(body)["acknowledged_id"] == 1
        status, _, text = request(server.url + "/api/fleet/summary")
        summary = json.loads(text)
        assert summary["nodes"] == NODES
        assert summary["by_label"]["rack"] == {str(r): NODES // 4 for r in range(4)}
        assert request(server.url + "/readyz")[0] == 200
        # Counters live in each worker; the multiprocess directory sums them for any scrape.
        scrapes = {
            metric(request(server.url + "/metrics")[2], "fleet_reports_accepted_total")
            for _ in range(6)
        }
        assert scrapes == {NODES}
