"""A real gunicorn facing what the environment does to it: a backup restored under the running
server, a truncated file, the sensor writer holding the write lock while changes wait."""

import base64
import json
import secrets
import subprocess
import sys
import threading

import pytest
from conftest import checkpoint, database_with
from live import (
    GUNICORN_ARGS,
    OPERATOR,
    PASSWORD,
    ROOT,
    LiveServer,
    metric,
    request,
    write_users_file,
)
from workers import LockHolder, clean_env

from webapp.core.store import PipelineStore

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()}


def etags(server, times=8):
    """Ask /api/pipeline several times (both workers answer some): the set of ETags seen."""
    seen = set()
    for _ in range(times):
        status, headers, body = request(server.url + "/api/pipeline")
        assert status == 200, body
        seen.add(headers["ETag"])
    return seen


def test_a_backup_renamed_over_the_database_is_served_without_a_restart(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        for pipeline_type in ("filtered", "aggregated", "raw"):
            store.set(pipeline_type, updated_by="ops", reason="live")
    backup = database_with(tmp_path / "backup.db", "schematized")
    with LiveServer(db_path, workers=2) as server:
        assert etags(server) == {'"3"'}
        checkpoint(db_path)
        backup.replace(db_path)
        assert etags(server) == {'"1"'}  # every worker, at its next request
        status, _, body = request(server.url + "/poll?since=3")
        assert status == 200 and "schematized" in body
        for _ in range(4):
            status, _, page = request(server.url + "/")
            assert status == 200 and 'data-pipeline-type="schematized" data-change-id="1"' in page
            status, _, page = request(server.url + "/history")
            assert status == 200 and 'data-change-id="3"' not in page
            status, _, body = request(server.url + "/metrics")
            assert metric(body, "pipeline_last_change_id") == 1


def test_a_truncated_database_is_reported_at_once_and_recovered(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="live")
    good = database_with(tmp_path / "good.db", "aggregated", "raw")
    users = write_users_file(tmp_path / "users.htpasswd")
    env = {"PIPELINE_USERS_FILE": str(users), "PIPELINE_WRITE_TIMEOUT": "20"}
    with LiveServer(db_path, workers=2, env=env) as server:
        assert etags(server) == {'"1"'}
        checkpoint(db_path)
        db_path.write_bytes(b"")
        for _ in range(4):
            status, _, body = request(server.url + "/api/pipeline")
            assert status == 503 and "not an SQLite database" in json.loads(body)["error"]
            status, _, body = request(server.url + "/readyz")
            assert status == 503 and "not an SQLite database" in body
        # A change is refused at once too (never waits out the 20 s budget as "busy").
        status, _, body = request(
            server.url + "/api/pipeline",
            data=json.dumps({"pipeline_type": "raw", "reason": "r"}).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert status == 503 and "not an SQLite database" in body
        assert db_path.stat().st_size == 0  # nothing was written
        status, _, body = request(server.url + "/metrics")
        assert metric(body, "pipeline_busy_failures_total") == 0
        good.replace(db_path)
        assert etags(server) == {'"2"'}


def test_reads_keep_answering_while_changes_wait_for_a_held_lock(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops", reason="before")
    users = write_users_file(tmp_path / "users.htpasswd")
    env = {"PIPELINE_USERS_FILE": str(users), "PIPELINE_WRITE_TIMEOUT": "20"}
    with LiveServer(db_path, workers=2, env=env) as server:
        answers = []

        def change(pipeline_type):
            body = json.dumps({"pipeline_type": pipeline_type, "reason": "waits"}).encode()
            headers = {**AUTH, "Content-Type": "application/json"}
            answers.append(request(server.url + "/api/pipeline", data=body, headers=headers)[0])

        writers = [
            threading.Thread(target=change, args=(t,))
            for t in ("aggregated", "raw", "schematized", "filtered")
        ]
        holder = LockHolder(db_path)  # the sensor writer, mid-transaction
        for writer in writers:
            writer.start()
        try:
            # Wait until the server reports the four changes waiting (each retried at least
            # once): then they hold their threads.
            for _ in range(400):
                status, _, body = request(server.url + "/metrics")
                if metric(body, "pipeline_write_retries_total") >= 4:
                    break
            else:
                pytest.fail("the changes never started waiting for the lock")
            for _ in range(10):
                for path in ("/healthz", "/readyz", "/poll?since=1", "/", "/api/pipeline"):
                    status, _, body = request(server.url + path)
                    assert status in (200, 204), (path, status, body)
            assert all(writer.is_alive() for writer in writers)  # still waiting meanwhile
            assert answers == []
        finally:
            holder.release("commit")
            holder.__exit__()
            for writer in writers:
                writer.join(timeout=60)
        assert sorted(answers) == [200] * 4


def test_at_most_half_the_threads_wait_for_the_lock(db_path, tmp_path):
    users = write_users_file(tmp_path / "users.htpasswd")
    env = {
        "PIPELINE_USERS_FILE": str(users),
        "PIPELINE_WRITE_TIMEOUT": "20",
        "PIPELINE_WORKER_THREADS": "2",
    }
    with LiveServer(db_path, workers=1, env=env) as server:
        holder = LockHolder(db_path)
        first = []
        body = json.dumps({"pipeline_type": "raw", "reason": "waits"}).encode()
        headers = {**AUTH, "Content-Type": "application/json"}
        waiting = threading.Thread(
            target=lambda: first.append(request(server.url + "/api/pipeline", body, headers))
        )
        waiting.start()
        try:
            for _ in range(400):
                if metric(request(server.url + "/metrics")[2], "pipeline_write_retries_total"):
                    break
            status, _, answer = request(server.url + "/api/pipeline", body, headers)
            assert status == 503 and "retrying is safe" in answer
            assert request(server.url + "/healthz")[0] == 200  # the other thread still serves
        finally:
            holder.release("commit")
            holder.__exit__()
            waiting.join(timeout=60)
        assert first[0][0] == 200


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"PIPELINE_WRITE_TIMEOUT": "40"}, "must end at least 5 s before PIPELINE_WORKER_TIMEOUT"),
        ({"PIPELINE_WORKER_THREADS": "٣"}, "PIPELINE_WORKER_THREADS must be a whole number"),
        ({"PIPELINE_WORKER_THREADS": "1"}, "leaves no thread for /healthz, /readyz and pages"),
        ({"PIPELINE_WRITE_TIMEOUT": "nan"}, "PIPELINE_WRITE_TIMEOUT must be a number"),
    ],
)
def test_gunicorn_refuses_to_start_with_settings_that_cannot_work(db_path, env, fragment):
    result = subprocess.run(
        [sys.executable, *GUNICORN_ARGS],
        cwd=ROOT,
        env=clean_env(PIPELINE_DB=db_path, PIPELINE_SECRET_KEY=secrets.token_hex(32), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert output.splitlines() == [output.splitlines()[-1]] and fragment in output, output
