"""Real processes for the store and CLI tests: the flask CLI, writers, readers, a lock holder.

Importable by tests (and by ``multiprocessing`` children started with *spawn*), and runnable as a
script for the processes a test kills or drives through pipes::

    python tests/workers.py hold-lock DB [exclusive]   # BEGIN IMMEDIATE, "locked"; stdin → COMMIT
    python tests/workers.py crash-writer DB NAME SEED   # set forever; prints "ID REASON" per ack
"""

import contextlib
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import sysconfig
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

PIPELINE_TYPES = ("raw", "schematized", "filtered", "aggregated")
SENSOR_INSERT = (
    "INSERT INTO sensor_readings (sensor_id, value, recorded_at) "
    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
)


# -- the real flask CLI --------------------------------------------------------------------------


def clean_env(**extra) -> dict:
    """Return the environment without any PIPELINE_* setting, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in extra.items()})
    return env


#: The two entrances to the same command group (README: "Command line").
ENTRANCES = ("pipeline-manager", "flask")


def flask_command(*args, python=None) -> list[str]:
    return [python or sys.executable, "-m", "flask", "--app", "webapp", "pipeline", *map(str, args)]


def cli_command(*args, entrance="flask") -> list[str]:
    """Return the command line of ``pipeline ARGS`` through ``entrance``."""
    if entrance == "pipeline-manager":
        return [str(Path(sys.executable).parent / "pipeline-manager"), *map(str, args)]
    return flask_command(*args)


def run_cli(*args, env=None, timeout=60, entrance="flask", **kwargs):
    """Run ``pipeline ARGS`` in a real process (through ``entrance``), from the repository root."""
    return subprocess.run(
        cli_command(*args, entrance=entrance),
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_cli(*args, env=None, entrance="flask", **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(*args, entrance=entrance),
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def unprivileged_python(uid=65534, gid=65534):
    """Return ``(python, env)`` with which ``uid`` can run the app, or ``(None, reason)``.

    The venv's interpreter may live under a home directory other users cannot enter (pyenv in
    /root), so fall back to a system interpreter of the same version with our site-packages.
    """
    env = clean_env(
        HOME="/nonexistent",
        XDG_CACHE_HOME="/nonexistent",
        PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], str(ROOT)]),
    )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, os.path.realpath(sys.executable)]
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    tried = []
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "import sqlite3, flask, webapp.cli.pipeline"],
                cwd="/",
                env=env,
                user=uid,
                group=gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except OSError as error:
            tried.append(f"{python}: {error}")
            continue
        if probe.returncode == 0:
            return python, env
        tried.append(f"{python}: {probe.stderr.strip().splitlines()[-1:]}")
    return None, "; ".join(tried) or "no interpreter found"


# -- files ---------------------------------------------------------------------------------------


def snapshot(folder) -> dict:
    """Return every entry of ``folder`` with its kind, mode, size, mtime and content hash."""
    entries = {}
    for path in sorted(Path(folder).iterdir()):
        info = path.lstat()
        digest = None
        # Not root: an unreadable file is compared by its stat alone.
        if path.is_file():
            with contextlib.suppress(PermissionError):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
        entries[path.name] = (path.is_dir(), info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return entries


def rows_by_reason(db_path) -> dict:
    """Return ``{reason: [ids]}`` for every pipeline_config row (read in its own connection)."""
    import json

    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT id, metadata FROM pipeline_config ORDER BY id").fetchall()
    finally:
        conn.close()
    found = {}
    for row_id, metadata in rows:
        found.setdefault(json.loads(metadata).get("reason"), []).append(row_id)
    return found


def check_chain(db_path) -> int:
    """Assert every row's ``previous`` is the type of the row before it; return the row count.

    Each set reads the current type and inserts inside one BEGIN IMMEDIATE transaction, so under
    any contention the rows form an unbroken chain with no two equal neighbours.
    """
    import json

    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT id, pipeline_type, metadata FROM pipeline_config ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    previous_type, previous_id = None, None
    for row_id, pipeline_type, metadata in rows:
        meta = json.loads(metadata)
        assert meta["previous"] == previous_type, (row_id, meta, previous_type)
        assert meta["previous_id"] == previous_id, (row_id, meta, previous_id)
        assert pipeline_type != previous_type, (row_id, pipeline_type)
        previous_type, previous_id = pipeline_type, row_id
    return len(rows)


def integrity(db_path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


# -- multiprocessing workers (start method: spawn) -----------------------------------------------


def contention_writer(db_path, name, sets, seed, barrier, results):
    """Set ``sets`` times with unique reasons; report every (id, reason, type, changed)."""
    acks, error = [], None
    try:
        from webapp.core.store import PipelineStore

        rng = random.Random(seed)
        store = PipelineStore(db_path, write_timeout=60)
        barrier.wait(timeout=120)
        for i in range(sets):
            reason = f"{name}-{i}"
            result = store.set(
                rng.choice(PIPELINE_TYPES), updated_by=name, reason=reason, source="cli"
            )
            acks.append((result.change.id, reason, result.change.pipeline_type, result.changed))
        store.close()
    except BaseException:  # report everything: the test asserts no error escaped
        error = traceback.format_exc()
    results.put(("writer", name, acks, error))


def sensor_writer(db_path, barrier, stop, results, pause=0.002):
    """Insert sensor readings, a few per transaction, every ``pause`` seconds until ``stop``.

    A writer that retakes the lock the instant it commits (``pause=0``) starves every other
    writer whatever their backoff; real sensor writers pause between batches.
    """
    inserted, error = 0, None
    try:
        conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        barrier.wait(timeout=120)
        while not stop.wait(pause):
            conn.execute("BEGIN IMMEDIATE")
            for n in range(5):
                conn.execute(SENSOR_INSERT, (f"s-{n}", random.random()))
            conn.execute("COMMIT")
            inserted += 5
        conn.close()
    except BaseException:
        error = traceback.format_exc()
    results.put(("sensor", "sensor", inserted, error))


def pipeline_reader(db_path, barrier, stop, results):
    """Read the current pipeline with the uploader's function in a tight loop."""
    reads, invalid, seen, error = 0, [], set(), None
    try:
        from webapp.core.pipelines import DEFAULT_BUCKETS
        from webapp.uploader import active_pipeline, connect_uploader

        conn = connect_uploader(db_path)
        barrier.wait(timeout=120)
        while not stop.is_set():
            pipeline_type, bucket = active_pipeline(conn)
            reads += 1
            seen.add(pipeline_type)
            if pipeline_type not in PIPELINE_TYPES or bucket != DEFAULT_BUCKETS[pipeline_type]:
                invalid.append((pipeline_type, bucket))
            if conn.in_transaction:
                invalid.append("transaction left open")
        conn.close()
    except BaseException:
        error = traceback.format_exc()
    results.put(("reader", "reader", (reads, invalid, sorted(seen)), error))


# -- script entry points -------------------------------------------------------------------------


def hold_lock(db_path, mode="wal"):
    """Hold the write lock (as a sensor writer mid-transaction) until told on stdin.

    ``mode="exclusive"``: keep the file in rollback-journal mode and take SQLite's EXCLUSIVE
    lock, as a writer committing there does; then even readers must wait.
    """
    conn = sqlite3.connect(db_path, isolation_level=None)
    if mode == "exclusive":
        conn.execute("BEGIN EXCLUSIVE")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
    conn.execute(SENSOR_INSERT, ("holder", 1.0))
    print("locked", flush=True)
    command = sys.stdin.readline().strip() or "commit"
    conn.execute("COMMIT" if command == "commit" else "ROLLBACK")
    print("released", flush=True)
    conn.close()


def crash_writer(db_path, name, seed):
    """Set forever; after each acknowledged change print ``ID REASON`` (flushed)."""
    from webapp.core.store import PipelineStore

    rng = random.Random(seed)
    store = PipelineStore(db_path, write_timeout=60)
    print("ready", flush=True)
    i = 0
    while True:
        reason = f"{name}-{i}"
        current = store.current().pipeline_type
        choice = rng.choice([t for t in PIPELINE_TYPES if t != current])
        result = store.set(choice, updated_by=name, reason=reason, source="cli")
        if result.changed:
            print(f"{result.change.id} {reason}", flush=True)
        i += 1


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "hold-lock":
        hold_lock(*arguments)
    elif command == "crash-writer":
        crash_writer(arguments[0], arguments[1], int(arguments[2]))
    else:
        sys.exit(f"unknown command {command!r}")


WORKERS = str(Path(__file__).resolve())


class LockHolder:
    """``tests/workers.py hold-lock``: holds BEGIN IMMEDIATE until :meth:`release`."""

    def __init__(self, db_path, mode="wal"):
        self.process = subprocess.Popen(
            [sys.executable, WORKERS, "hold-lock", str(db_path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        line = self.process.stdout.readline()
        assert line == "locked\n", (line, self.process.stderr.read())

    def release(self, how="commit"):
        self.process.stdin.write(how + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "released\n"
        assert self.process.wait(timeout=30) == 0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()
