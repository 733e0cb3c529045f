"""Real processes against one SQLite file: contention, a held write lock, and kill -9 crashes."""

import json
import multiprocessing
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from workers import (
    ROOT,
    LockHolder,
    check_chain,
    clean_env,
    contention_writer,
    integrity,
    pipeline_reader,
    rows_by_reason,
    run_cli,
    sensor_writer,
)

from webapp.core import events
from webapp.core.errors import DatabaseBusy
from webapp.core.store import PipelineStore

pytestmark = pytest.mark.slow

WORKERS = str(ROOT / "tests" / "workers.py")


def sensor_count(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM sensor_readings").fetchall()[0][0]
    finally:
        conn.close()


def pipeline_rows(path):
    conn = sqlite3.connect(path)
    try:
        exists = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'pipeline_config'"
        ).fetchall()[0][0]
        if not exists:
            return []
        return conn.execute("SELECT id, pipeline_type, metadata FROM pipeline_config").fetchall()
    finally:
        conn.close()


# -- contention ----------------------------------------------------------------------------------


def test_concurrent_writers_with_a_sensor_writer_and_a_reader(db_path):
    writers, sets_each = 6, 40
    seed = random.randrange(1 << 30)
    print(f"contention seed: {seed}")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + 2)  # all start together
    stop = ctx.Event()
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=contention_writer,
            args=(str(db_path), f"w{n}", sets_each, seed + n, barrier, results),
        )
        for n in range(writers)
    ]
    processes.append(ctx.Process(target=sensor_writer, args=(str(db_path), barrier, stop, results)))
    processes.append(
        ctx.Process(target=pipeline_reader, args=(str(db_path), barrier, stop, results))
    )
    sensor_before = sensor_count(db_path)
    for process in processes:
        process.start()
    reports = {}
    try:
        while len(reports) < writers:  # writers finish on their own
            kind, name, payload, error = results.get(timeout=120)
            reports[name] = (kind, payload, error)
        stop.set()  # then the sensor writer and the reader stop
        while len(reports) < writers + 2:
            kind, name, payload, error = results.get(timeout=60)
            reports[name] = (kind, payload, error)
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
    assert [p.exitcode for p in processes] == [0] * len(processes)
    errors = {name: error for name, (_, _, error) in reports.items() if error}
    assert not errors, errors

    # Every acknowledged change is stored exactly once, with the id the writer was given.
    acked = [ack for n in range(writers) for ack in reports[f"w{n}"][1]]
    assert len(acked) == writers * sets_each
    by_reason = rows_by_reason(db_path)
    changed = [(row_id, reason) for row_id, reason, _, was_changed in acked if was_changed]
    for row_id, reason in changed:
        assert by_reason.get(reason) == [row_id], reason
    # Nothing else: an idempotent no-op wrote no row, no retry wrote a second one.
    assert sum(len(ids) for ids in by_reason.values()) == len(changed)
    no_ops = [reason for _, reason, _, was_changed in acked if not was_changed]
    assert not set(no_ops) & set(by_reason)
    # Each set read and inserted in one transaction: an unbroken chain of distinct neighbours.
    assert check_chain(db_path) == len(changed)
    assert len(changed) > writers * sets_each // 2

    inserted = reports["sensor"][1]
    assert inserted > 0 and sensor_count(db_path) == sensor_before + inserted
    reads, invalid, seen = reports["reader"][1]
    assert invalid == []
    assert reads > 100 and set(seen) <= {"raw", "schematized", "filtered", "aggregated"}
    assert integrity(db_path) == "ok"
    print(f"{len(changed)} changes, {len(no_ops)} no-ops, {inserted} readings, {reads} reads")


# -- a held write lock ---------------------------------------------------------------------------


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def set_in_background(db_path, pipeline_type, updated_by, reason):
    """Start a set with a long budget in a thread; return the thread and its outcome dict."""
    outcome = {}

    def run():
        try:
            with PipelineStore(db_path, write_timeout=60) as store:
                outcome["result"] = store.set(pipeline_type, updated_by=updated_by, reason=reason)
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_set_waits_for_the_lock_and_succeeds_when_it_goes(db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="before")
    sensors = sensor_count(db_path)
    with LockHolder(db_path) as holder:
        retries_before = events.STATS["write_retries"]
        thread, outcome = set_in_background(db_path, "aggregated", "waiter", "w")
        # Release only once the set has really met the lock (and backed off at least twice).
        wait_for(lambda: events.STATS["write_retries"] >= retries_before + 2)
        assert thread.is_alive() and "result" not in outcome
        assert [row[1] for row in pipeline_rows(db_path)] == ["filtered"]
        holder.release("commit")
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.changed and result.change.pipeline_type == "aggregated"
    assert result.change.previous == "filtered"
    assert [row[1] for row in pipeline_rows(db_path)] == ["filtered", "aggregated"]
    assert sensor_count(db_path) == sensors + 1  # the holder's own transaction committed too
    assert integrity(db_path) == "ok"


def test_first_connection_waits_while_a_rollback_journal_file_is_locked(db_path):
    # The sensor file may still be in rollback-journal mode: while another process commits
    # there, even opening our connection (schema check, WAL switch) must wait, not fail.
    with LockHolder(db_path, "exclusive") as holder:
        retries_before = events.STATS["write_retries"]
        thread, outcome = set_in_background(db_path, "filtered", "first", "f")
        wait_for(lambda: events.STATS["write_retries"] >= retries_before + 2)
        assert thread.is_alive() and not outcome
        holder.release("commit")
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].changed
    assert [row[1] for row in pipeline_rows(db_path)] == ["filtered"]
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    conn.close()


def test_cli_set_waits_for_the_lock_within_the_budget(db_path):
    with LockHolder(db_path) as holder:
        env = clean_env(PIPELINE_DB=db_path, PIPELINE_WRITE_TIMEOUT=60)
        setter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "webapp",
                "pipeline",
                "set",
                "raw",
                "--reason",
                "r",
                "--json",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The set cannot finish while the lock is held: it is still running after
            # several of its own retry intervals.
            with pytest.raises(subprocess.TimeoutExpired):
                setter.wait(timeout=1.5)
            assert pipeline_rows(db_path) == []
            holder.release("rollback")
            out, err = setter.communicate(timeout=60)
        finally:
            if setter.poll() is None:
                setter.kill()
                setter.wait()
    assert setter.returncode == 0, err
    assert json.loads(out)["changed"] is True
    assert len(pipeline_rows(db_path)) == 1


def test_set_fails_cleanly_when_the_lock_outlasts_the_budget(db_path):
    with LockHolder(db_path) as holder:
        with PipelineStore(db_path, write_timeout=0.5) as store:
            started = time.monotonic()
            with pytest.raises(DatabaseBusy) as caught:
                store.set("filtered", updated_by="ops", reason="too late")
            elapsed = time.monotonic() - started
        message = str(caught.value)
        assert "another process held the write lock" in message
        assert "0.5 s" in message and "nothing was written" in message
        assert "\n" not in message
        assert 0.4 <= elapsed < 5, elapsed
        holder.release("commit")
    assert pipeline_rows(db_path) == []
    assert integrity(db_path) == "ok"


def test_cli_set_exits_4_when_the_lock_outlasts_the_budget(db_path):
    with PipelineStore(db_path) as store:
        store.set("schematized", updated_by="before")
    with LockHolder(db_path) as holder:
        env = clean_env(PIPELINE_DB=db_path, PIPELINE_WRITE_TIMEOUT=0.5)
        result = run_cli("set", "filtered", "--by", "ops", "--reason", "late", env=env)
        holder.release("commit")
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: database is busy: another process held the write lock")
    assert "nothing was written" in lines[0]
    assert result.stdout == ""
    assert [row[1] for row in pipeline_rows(db_path)] == ["schematized"]


def test_reads_are_not_blocked_by_a_held_write_lock(db_path):
    with PipelineStore(db_path) as store:
        store.set("filtered", updated_by="ops")
    with LockHolder(db_path) as holder:
        result = run_cli("--db", db_path, "get", "--json", env=clean_env(PIPELINE_WRITE_TIMEOUT=0))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["pipeline_type"] == "filtered"
        holder.release("commit")


# -- kill -9 -------------------------------------------------------------------------------------


def read_lines(stream, sink):
    for line in stream:
        sink.put(line)


def test_writers_killed_at_random_moments_lose_no_acknowledged_change(db_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash seed: {seed} (rerun with CRASH_SEED={seed})")
    rng = random.Random(seed)
    rounds, writers_per_round = 6, 3
    acknowledged = []  # (id, reason) printed after set returned
    kills = 0
    for round_number in range(rounds):
        processes, lines = [], queue.Queue()
        for n in range(writers_per_round):
            process = subprocess.Popen(
                [
                    sys.executable,
                    WORKERS,
                    "crash-writer",
                    str(db_path),
                    f"r{round_number}w{n}",
                    str(rng.randrange(1 << 30)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(),
            )
            reader = threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True)
            reader.start()
            processes.append((process, reader))
        # Let them all get going before the random moment begins.
        ready = 0
        deadline = time.monotonic() + 60
        pending = []
        while ready < writers_per_round:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line == "ready\n":
                ready += 1
            else:
                pending.append(line)
        # Kill each writer at its own random moment, mid-stream.
        moments = sorted((rng.uniform(0.05, 0.6), index) for index in range(writers_per_round))
        started = time.monotonic()
        for moment, index in moments:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            process = processes[index][0]
            assert process.poll() is None, process.stderr.read()
            process.send_signal(signal.SIGKILL)
            kills += 1
        for process, reader in processes:
            process.wait(timeout=30)
            assert process.returncode == -signal.SIGKILL
            reader.join(timeout=30)
            process.stdout.close()
            stderr = process.stderr.read()
            process.stderr.close()
            assert "Traceback" not in stderr, stderr
        while True:
            try:
                pending.append(lines.get_nowait())
            except queue.Empty:
                break
        for line in pending:
            if line.endswith("\n") and line != "ready\n":  # a torn last line was not acknowledged
                row_id, reason = line.split()
                acknowledged.append((int(row_id), reason))
        assert integrity(db_path) == "ok", f"after round {round_number}"

    assert integrity(db_path) == "ok"
    by_reason = rows_by_reason(db_path)
    for row_id, reason in acknowledged:
        assert by_reason.get(reason) == [row_id], (reason, by_reason.get(reason))
    # Rows committed just before a kill (not yet printed) may exist; each exactly once.
    assert all(len(ids) == 1 for ids in by_reason.values())
    total = check_chain(db_path)
    assert len(acknowledged) > 0 and total >= len(acknowledged)
    # The file still works for everyone afterwards.
    with PipelineStore(db_path) as store:
        other = next(t for t in ("raw", "filtered") if t != store.current().pipeline_type)
        assert store.set(other, updated_by="after", reason="after the crashes").change.id > total
    print(f"{kills} kills, {len(acknowledged)} acknowledged changes, {total} rows")
