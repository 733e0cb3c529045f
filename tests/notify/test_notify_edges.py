"""The notifier with rows at the edge of the calendar (issue 15.1), and what it writes to its
log from stored text and receivers (issue 15.13): real processes, a real receiver."""

import json
import os
import pty
import signal
import sqlite3
import subprocess

import pytest
from hooklib import WAIT, Notifier, Receiver, serve_once
from rowlib import insert_row
from workers import clean_env, cli_command, run_cli, start_cli

from webapp.core.store import PipelineStore
from webapp.notify import webhooks
from webapp.notify.webhooks import DeliveryFailed, parse_webhook

EDGE = "0001-01-01T00:00:00+01:00"


@pytest.mark.slow
def test_edge_rows_are_posted_and_a_restarted_notifier_starts(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", EDGE)  # the newest row when the notifier starts
    state = tmp_path / "state.json"
    with Receiver() as receiver:
        args = ("--webhook", receiver.url, "--state", state, "--interval", "0.05")
        notifier = again = Notifier(db_path, *args)
        try:
            notifier.wait_started()
            change = insert_row(db_path, "aggregated", "9999-12-31T23:59:59-01:00")
            (post,) = receiver.acknowledged_until(change)
            assert post.record["updated_at"] == "9999-12-31T23:59:59-01:00"
            assert "at 9999-12-31T23:59:59-01:00 (unknown time)." in post.record["text"]
            assert post.record["previous"] == "filtered"  # the row before (no metadata)
            assert notifier.stop() == 0
            again = Notifier(db_path, *args)  # before issue 15: dead at start, for good
            again.wait_started()
            later = insert_row(db_path, "raw", "9999-12-31 23:59:59.999")
            assert [p.change_id for p in receiver.acknowledged_until(later)] == [later]
            assert again.stop() == 0
        finally:
            notifier.kill()
            again.kill()


# -- what reaches the log and the terminal (issue 15.13) ----------------------------------------

ESCAPE = "\x1b[2J\x1b[31m"
FOREIGN_COLUMNS = f'id INTEGER PRIMARY KEY, "kind{ESCAPE}" TEXT, "at\n2026 fake line" TEXT'


def replace_with_a_foreign_table(db_path, tmp_path):
    """Put a restored file of another tool's shape, with column names that act on terminals."""
    other = tmp_path / "foreign.db"
    conn = sqlite3.connect(other)
    conn.execute(f"CREATE TABLE pipeline_config ({FOREIGN_COLUMNS})")
    conn.commit()
    conn.close()
    os.replace(other, db_path)


def redirecting_receiver(location):
    """A receiver that answers every post with a redirect to ``location``."""

    def redirect(handler):
        handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return serve_once(redirect)


def test_a_redirects_user_info_path_and_query_never_reach_the_reason():
    server = redirecting_receiver("https://user:s3cret@evil.example:8443/p?token=t0ken")
    try:
        webhook = parse_webhook(f"http://127.0.0.1:{server.server_port}/hook")
        with pytest.raises(DeliveryFailed) as caught:
            webhooks.post(webhook, b"{}", {})
    finally:
        server.shutdown()
        server.server_close()
    reason = str(caught.value)
    assert reason == "HTTP 302, a redirect to evil.example:8443: not followed (fix the URL)"
    assert webhooks.host_of("http://[::1") == ""  # malformed: no host shown, no exception


@pytest.mark.slow
def test_notify_log_lines_are_terminal_safe_and_hold_no_user_info(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    server = redirecting_receiver("http://user:s3cret@evil.example/x")
    url = f"http://127.0.0.1:{server.server_port}/hook"
    notifier = Notifier(db_path, "--webhook", url, "--state", tmp_path / "s.json")
    try:
        notifier.wait_started()
        with PipelineStore(db_path) as store:
            store.set("filtered", updated_by="ops", reason="r")
        (line,) = notifier.wait_for("a redirect to evil.example")
        assert "s3cret" not in notifier.log() and "user:" not in notifier.log()
        replace_with_a_foreign_table(db_path, tmp_path)
        (warning,) = notifier.wait_for("still watching")
        assert "kind\\x1b[2J\\x1b[31m" in warning and "at\\x0a2026 fake line" in warning
        assert "\x1b" not in notifier.log()
    finally:
        notifier.kill()
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_monitor_warnings_are_terminal_safe(db_path, tmp_path):
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    process = start_cli("--db", db_path, "monitor", "--interval", "0.05", env=clean_env())
    try:
        assert process.stdout.readline().startswith("database: ")
        assert process.stdout.readline().startswith("current: raw")
        replace_with_a_foreign_table(db_path, tmp_path)
        warning = process.stderr.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=WAIT)
    assert warning.startswith("Warning: ") and warning.endswith("still watching\n")
    assert "kind\\x1b[2J\\x1b[31m" in warning and "\x1b" not in warning


def read_all(fd) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end of the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def on_a_terminal(*args) -> str:
    """Run ``pipeline-manager ARGS`` with stdout on a pseudo-terminal; return what it showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        cli_command(*args, entrance="pipeline-manager"),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    os.close(terminal)
    shown = read_all(controller).decode()
    os.close(controller)
    assert process.wait(WAIT) == 0, process.stderr.read()
    process.stderr.close()
    return shown


@pytest.mark.slow
def test_history_exports_are_escaped_on_a_terminal_and_exact_in_a_pipe(db_path):
    """CSV and JSON are data, exact in a file or a pipe; a terminal gets them escaped: CSV cell
    by cell (``\\x1b``), JSON with ``\\u`` escapes (the same values)."""
    with PipelineStore(db_path) as store:
        store.set("raw", updated_by="ops", reason="first")
    insert_row(db_path, "filtered", "2026-11-25 10:00:00", f"tool{ESCAPE}\x9b2J\r\n2026 fake,row")
    args = ("--db", db_path, "history", "--format")
    piped = run_cli(*args, "csv", entrance="pipeline-manager", timeout=WAIT)
    assert piped.returncode == 0 and f'"tool{ESCAPE}\x9b2J' in piped.stdout  # data: exact
    shown = on_a_terminal(*args, "csv")
    assert "\x1b" not in shown and "\x9b" not in shown
    assert "tool\\x1b[2J\\x1b[31m\\x9b2J\\x0d\\x0a2026 fake,row" in shown
    assert len(shown.splitlines()) == 3  # the header and two rows: no fake line
    shown = on_a_terminal(*args, "json")
    assert "\x9b" not in shown and "\\u009b2J" in shown
    assert json.loads(shown)[0]["updated_by"] == f"tool{ESCAPE}\x9b2J\r\n2026 fake,row"
