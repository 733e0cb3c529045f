"""/metrics: pipeline facts read from the database, contention counters summed across processes."""

import os
import sqlite3
import subprocess
import sys

import pytest
from live import ROOT
from prometheus_client.parser import text_string_to_metric_families

from webapp import create_app
from webapp.core.errors import DatabaseBusy
from webapp.core.store import PipelineStore


def scrape(client) -> dict:
    """Return {(sample name, sorted labels): value} from one /metrics answer."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse(response.get_data(as_text=True))


def parse(text) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def active(samples) -> dict:
    return {
        dict(labels)["pipeline_type"]: (dict(labels)["bucket"], value)
        for (name, labels), value in samples.items()
        if name == "pipeline_active"
    }


@pytest.fixture(autouse=True)
def single_process_mode(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_a_database_never_set_reports_the_default(client):
    samples = scrape(client)
    assert samples[("pipeline_database_up", ())] == 1
    assert active(samples) == {
        "raw": ("ingestion", 1),
        "schematized": ("validated", 0),
        "filtered": ("enriched", 0),
        "aggregated": ("aggregated", 0),
    }
    assert samples[("pipeline_last_change_id", ())] == 0
    assert samples[("pipeline_unmanaged_type", ())] == 0
    # No full count: a scrape costs the same with a million changes (docs/benchmarks.md).
    assert not any(name == "pipeline_changes_total" for name, _ in samples)


def test_facts_follow_changes_made_elsewhere(client, store):
    store.set("filtered", updated_by="ops")
    last = store.set("aggregated", updated_by="ops").change
    samples = scrape(client)
    assert active(samples)["aggregated"] == ("aggregated", 1)
    assert sum(value for _, value in active(samples).values()) == 1
    assert samples[("pipeline_last_change_id", ())] == last.id
    assert samples[("pipeline_last_change_timestamp_seconds", ())] == last.updated_at.timestamp()


def test_buckets_come_from_the_configuration(db_path):
    app = create_app(
        {"TESTING": True, "DB": str(db_path), "SECRET_KEY": "k", "BUCKET_RAW": "landing-zone"}
    )
    assert active(scrape(app.test_client()))["raw"] == ("landing-zone", 1)


def test_an_unusable_database_still_answers_with_database_down(tmp_path):
    missing = tmp_path / "sensor_data.db"
    app = create_app({"TESTING": True, "DB": str(missing), "SECRET_KEY": "k"})
    samples = scrape(app.test_client())
    assert samples[("pipeline_database_up", ())] == 0
    assert ("pipeline_last_change_id", ()) not in samples
    assert ("pipeline_busy_failures_total", ()) in samples
    assert not missing.exists()


def hold_write_lock(db_path):
    """Open a connection that holds the write lock until closed (another writer)."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_retries_and_busy_failures_are_counted(client, db_path):
    before = scrape(client)
    holder = hold_write_lock(db_path)
    try:
        with pytest.raises(DatabaseBusy), PipelineStore(db_path, write_timeout=0.3) as store:
            store.set("filtered", updated_by="ops")
    finally:
        holder.close()
    after = scrape(client)
    assert after[("pipeline_busy_failures_total", ())] == (
        before[("pipeline_busy_failures_total", ())] + 1
    )
    assert (
        after[("pipeline_write_retries_total", ())] > before[("pipeline_write_retries_total", ())]
    )


BUSY_WORKER = """
import sys
from webapp import create_app
from webapp.core.errors import DatabaseBusy
from webapp.core.store import PipelineStore
create_app({"DB": sys.argv[1], "SECRET_KEY": "k", "TESTING": True})  # registers the counters
try:
    PipelineStore(sys.argv[1], write_timeout=0.2).set("filtered", updated_by="ops")
except DatabaseBusy:
    print("busy")
"""

SCRAPER = """
import sys
from webapp import create_app
app = create_app({"DB": sys.argv[1], "SECRET_KEY": "k", "TESTING": True})
print(app.test_client().get("/metrics").get_data(as_text=True))
"""


@pytest.mark.slow
def test_multiprocess_mode_sums_counters_of_every_process(db_path, tmp_path):
    """What gunicorn workers do: each counts in its own file, any one of them reports the sum."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def run(script):
        result = subprocess.run(
            [sys.executable, "-c", script, str(db_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    holder = hold_write_lock(db_path)
    try:
        assert run(BUSY_WORKER).strip() == "busy"
        assert run(BUSY_WORKER).strip() == "busy"
    finally:
        holder.close()
    samples = parse(run(SCRAPER))
    assert samples[("pipeline_busy_failures_total", ())] == 2
    assert samples[("pipeline_write_retries_total", ())] >= 2
