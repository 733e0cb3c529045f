"""``pipeline notify`` as operators run it: a real process, a real HTTP receiver on 127.0.0.1.

Changes come from the CLI, the API and a plain ``sqlite3`` insert; the receiver fails, goes
away, the notifier is killed. Every change must arrive, in order, acknowledged once (a change
in flight at a SIGKILL may arrive twice).
"""

import base64
import hmac
import json
import os
import signal
import sqlite3
import time

import pytest
from hooklib import TOKEN, WAIT, Notifier, Receiver, sample, scrape, signed, until
from live import free_port
from weblib import PASSWORDS, make_app
from workers import ENTRANCES, run_cli

from webapp.core.store import PipelineStore

SECRET = "webhook-test-secret"
FAST = ("--interval", "0.1", "--max-backoff", "0.3")


def set_pipeline(db_path, pipeline_type, reason):
    """Change the pipeline from another process: ``pipeline-manager set``."""
    result = run_cli(
        *("--db", db_path, "set", pipeline_type, "--by", "ops", "--reason", reason),
        entrance="pipeline-manager",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])["id"]  # the audit line


def insert_row(db_path, pipeline_type, updated_by, metadata):
    """Change the pipeline as another tool does: a plain INSERT, no metadata of ours."""
    conn = sqlite3.connect(db_path)
    with conn:
        cursor = conn.execute(
            "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
            "VALUES (?, '2026-11-25 10:00:00', ?, ?)",
            (pipeline_type, updated_by, metadata),
        )
    conn.close()
    return cursor.lastrowid


def state_of(path) -> dict:
    return json.loads(path.read_text())


def acknowledged_in(path) -> list[int]:
    return [entry["acknowledged_id"] for entry in state_of(path)["webhooks"].values()]


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_changes_from_every_writer_arrive_signed_in_order(db_path, tmp_path, monkeypatch, entrance):
    before = set_pipeline(db_path, "schematized", "before the notifier")  # never posted
    state = tmp_path / "state.json"
    with Receiver() as receiver:
        notifier = Notifier(
            db_path,
            *("--webhook", receiver.url, "--state", state, *FAST),
            entrance=entrance,
            env={"PIPELINE_WEBHOOK_SECRET": SECRET},
        )
        try:
            notifier.wait_started()
            from_cli = set_pipeline(db_path, "filtered", "from the CLI")
            api = make_app(db_path, tmp_path, monkeypatch).test_client()
            credentials = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
            answer = api.post(
                "/api/pipeline",
                json={"pipeline_type": "aggregated", "reason": "from the API"},
                headers={"Authorization": f"Basic {credentials}"},
            )
            assert answer.status_code == 200, answer.get_data(as_text=True)
            from_api = answer.get_json()["id"]
            from_sqlite = insert_row(db_path, "raw", "legacy\x1b[2Jtool", "not {json")
            posts = receiver.acknowledged_until(from_sqlite)
            assert notifier.stop() == 0, notifier.log()
        finally:
            notifier.kill()
    assert [post.change_id for post in posts] == [from_cli, from_api, from_sqlite]
    assert before not in receiver.ids()
    with PipelineStore(db_path) as store:
        for post, previous in zip(posts, ["schematized", "filtered", "aggregated"], strict=True):
            record = post.record
            # The record exactly as `get --json` prints it, plus previous and text.
            assert record == {
                **store.get(post.change_id).to_dict(),
                "previous": previous,
                "text": record["text"],
            }
            assert record["text"].startswith("Pipeline changed to ")
            assert post.headers["Content-Type"] == "application/json"
            assert post.path == f"/hooks/{TOKEN}"
            # The signature verifies with the secret, and with nothing else.
            signature = post.headers["X-Pipeline-Signature"]
            assert hmac.compare_digest(signature, signed(SECRET, post.body))
            assert not hmac.compare_digest(signature, signed("another secret", post.body))
            assert not hmac.compare_digest(signature, signed(SECRET, post.body + b" "))
    odd = posts[-1].record
    assert odd["metadata"] == {"unparsed": "not {json"} and odd["updated_by"] == "legacy\x1b[2Jtool"
    assert "\x1b" not in odd["text"] and "by legacy\\x1b[2Jtool at" in odd["text"]
    assert "via api" in posts[1].record["text"]
    assert posts[1].record["text"].endswith("Reason: from the API")
    # URLs may hold tokens: the log and the state file name the webhook by host and hash only.
    assert TOKEN not in notifier.log() and TOKEN not in state.read_text()
    assert f"http://127.0.0.1:{receiver.port}#" in notifier.log()
    assert acknowledged_in(state) == [from_sqlite]


@pytest.mark.slow
def test_a_failing_receiver_gets_every_change_once_acknowledged_in_order(db_path, tmp_path):
    metrics_port = free_port()
    with Receiver(answers=[500, 500, 500]) as receiver:
        notifier = Notifier(
            db_path,
            *("--webhook", receiver.url, "--state", tmp_path / "state.json", *FAST),
            *("--metrics-port", metrics_port),
        )
        try:
            notifier.wait_started()
            first = set_pipeline(db_path, "filtered", "one")
            second = set_pipeline(db_path, "aggregated", "two")  # waits behind the first
            receiver.acknowledged_until(second)
            failures = notifier.wait_for("not delivered (HTTP 500", count=3)
            notifier.wait_for(" delivered (HTTP 200", count=2)  # the notifier has the answers
            # ...and has moved its cursor (a moment after the log line): poll what it exports.
            label = f"http://127.0.0.1:{receiver.port}#"
            until(
                lambda: sample(scrape(metrics_port)[1], "pipeline_notify_lag_changes", label) == 0,
                what="lag 0",
            )
            status, metrics = scrape(metrics_port)
            health, _ = scrape(metrics_port, "/healthz")
            assert notifier.stop() == 0, notifier.log()
        finally:
            notifier.kill()
    assert [(post.change_id, post.status) for post in receiver.taken] == [
        (first, 500),
        (first, 500),
        (first, 500),
        (first, 200),
        (second, 200),
    ]
    assert "attempt 1" in failures[0] and "next attempt in" in failures[0]
    assert status == 200 and health == 200
    assert sample(metrics, "pipeline_notify_delivered_total", label) == 2
    assert sample(metrics, "pipeline_notify_failed_attempts_total", label) == 3
    assert sample(metrics, "pipeline_notify_lag_changes", label) == 0
    assert sample(metrics, "pipeline_notify_newest_change_id") == second
    assert TOKEN not in metrics


@pytest.mark.slow
def test_receiver_down_for_seconds_then_up_loses_nothing(db_path, tmp_path):
    receiver = Receiver().start()
    notifier = Notifier(
        db_path, "--webhook", receiver.url, "--state", tmp_path / "state.json", *FAST
    )
    try:
        notifier.wait_started()
        receiver.stop()
        down_since = time.monotonic()
        changes = [
            set_pipeline(db_path, pipeline_type, f"while down {n}")
            for n, pipeline_type in enumerate(["filtered", "aggregated", "raw"])
        ]
        notifier.wait_for("not delivered (Connection refused", count=4)
        # The outage itself must last: that is what this test is about, not synchronisation.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - down_since)))
        receiver.start()
        posts = receiver.acknowledged_until(changes[-1])
        assert notifier.stop() == 0, notifier.log()
    finally:
        notifier.kill()
        receiver.stop()
    assert [post.change_id for post in posts] == changes
    assert all(post.status == 200 for post in posts)


@pytest.mark.slow
def test_sigkill_mid_stream_resumes_after_the_last_acknowledged_change(db_path, tmp_path):
    changes = [
        set_pipeline(db_path, pipeline_type, f"backlog {n}")
        for n, pipeline_type in enumerate(["filtered", "aggregated", "raw", "schematized", "raw"])
    ]
    state = tmp_path / "state.json"
    args = ("--state", state, "--from-id", "0", *FAST)
    with Receiver() as receiver:
        receiver.hold(changes[2])  # the third post stays in flight until the notifier is dead
        first_run = Notifier(db_path, "--webhook", receiver.url, *args)
        try:
            receiver.acknowledged_until(changes[1])
            assert receiver.next_post().change_id == changes[2]  # in flight
            assert first_run.stop(signal.SIGKILL) == -signal.SIGKILL
        finally:
            first_run.kill()
        receiver.release()
        assert acknowledged_in(state) == [changes[1]]
        changes.append(set_pipeline(db_path, "aggregated", "while the notifier was dead"))
        # The same command again: --from-id no longer applies, the state file does.
        second_run = Notifier(db_path, "--webhook", receiver.url, *args)
        try:
            receiver.acknowledged_until(changes[-1])
            assert second_run.stop() == 0, second_run.log()
        finally:
            second_run.kill()
    assert f"posting the changes after #{changes[1]} (its state)" in second_run.log()
    # Every change in order; the one in flight at the kill, and only it, twice.
    assert receiver.ids() == changes[:3] + changes[2:]
    assert acknowledged_in(state) == [changes[-1]]


@pytest.mark.slow
def test_a_dead_webhook_holds_back_only_itself_and_sigterm_ends_its_retries(db_path, tmp_path):
    state = tmp_path / "state.json"
    metrics = tmp_path / "notify.prom"
    with Receiver(answers=[503] * 1000) as dead, Receiver() as alive:
        notifier = Notifier(
            db_path,
            *("--webhook", dead.url, "--webhook", alive.url, "--state", state),
            *("--interval", "0.1", "--metrics-file", metrics),  # backoff up to the default 60 s
        )
        try:
            notifier.wait_started()
            changes = [set_pipeline(db_path, "filtered", "one"), set_pipeline(db_path, "raw", "2")]
            alive.acknowledged_until(changes[-1])
            notifier.wait_for("not delivered (HTTP 503", count=2)
            until(lambda: lags(metrics) == {dead.port: 2, alive.port: 0}, what="metrics file")
            started = time.monotonic()
            assert notifier.stop() == 0, notifier.log()
            stopped_in = time.monotonic() - started
        finally:
            notifier.kill()
    assert stopped_in < 5, notifier.log()  # the backoff wait is cut short
    assert set(dead.ids()) == {changes[0]}  # the second waits behind the first
    assert alive.ids() == changes
    by_port = {
        int(entry["webhook"].rsplit("#")[0].rsplit(":", 1)[1]): entry["acknowledged_id"]
        for entry in state_of(state)["webhooks"].values()
    }
    assert by_port == {dead.port: 0, alive.port: changes[-1]}


def lags(metrics_file) -> dict:
    """Return {receiver port: lag} from a metrics file (empty until it is written)."""
    if not metrics_file.exists():
        return {}
    found = {}
    for line in metrics_file.read_text().splitlines():
        if line.startswith("pipeline_notify_lag_changes{"):
            label, value = line.rsplit(" ", 1)
            found[int(label.split("#")[0].rsplit(":", 1)[1])] = float(value)
    return found


@pytest.mark.slow
def test_the_database_gone_for_a_while_is_watched_until_it_is_back(db_path, tmp_path):
    away = tmp_path / "moved-away.db"
    with Receiver() as receiver:
        notifier = Notifier(
            db_path, "--webhook", receiver.url, "--state", tmp_path / "state.json", *FAST
        )
        try:
            notifier.wait_started()
            os.rename(db_path, away)
            notifier.wait_for("database not found")
            os.rename(away, db_path)
            notifier.wait_for("database usable again")
            change = set_pipeline(db_path, "aggregated", "after the outage")
            receiver.acknowledged_until(change)
            assert notifier.stop() == 0, notifier.log()
        finally:
            notifier.kill()
    assert receiver.ids() == [change]
    assert notifier.log().count("database not found") == 1  # said once, not every check


@pytest.mark.slow
@pytest.mark.parametrize("entrance", ENTRANCES)
def test_a_webhook_that_is_not_http_is_refused_at_start(db_path, tmp_path, entrance):
    result = run_cli(
        *("--db", db_path, "notify", "--webhook", f"ftp://files.example.org/{TOKEN}"),
        *("--state", tmp_path / "state.json"),
        entrance=entrance,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: webhook 1: not an http:// or https:// URL (got ftp:)"
    ]
    assert not (tmp_path / "state.json").exists()


# -- in process: refusals at start, and the notifier's own rules ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook", "ftp://files.example.org/x"], "webhook 1: not an http:// or https:// URL"),
        (["--webhook", "https://ok.example/", "--webhook", "http://"], "webhook 2: the URL names"),
        (["--webhook", "https://hooks.example.org/a b"], "webhook 1: the URL holds U+0020"),
        (["--webhook", "https://h.example/", "--from-id", "5"], "--from-id 5 is past the newest"),
    ],
)
def test_notify_refuses_at_start_with_one_error_line(cli, tmp_path, args, message):
    result = cli("notify", *args, "--state", tmp_path / "state.json")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()[-1:]
    assert line.startswith("Error: ") and message in line, result.stderr
    assert "Traceback" not in result.output


def test_notify_reads_its_webhooks_and_secret_file_from_settings(cli, tmp_path, monkeypatch):
    from clilib import with_settings

    bad = with_settings(
        cli, tmp_path, monkeypatch, PIPELINE_WEBHOOKS="https://ok.example/a, gopher://x.example/"
    )
    result = bad("notify", "--state", tmp_path / "state.json")
    assert result.exit_code == 2 and "Error: webhook 2: not an http" in result.stderr
    missing = tmp_path / "missing-secret"
    no_secret = with_settings(
        cli,
        tmp_path,
        monkeypatch,
        PIPELINE_WEBHOOKS="https://ok.example/a",
        PIPELINE_WEBHOOK_SECRET_FILE=missing,
    )
    result = no_secret("notify", "--state", tmp_path / "state.json")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: PIPELINE_WEBHOOK_SECRET_FILE: cannot read {missing} (No such file or directory)"
    ]


def test_notify_refuses_a_corrupt_state_file_and_a_second_notifier(cli, tmp_path):
    from webapp.notify.state import NotifyState

    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "webhooks": ')
    result = cli("notify", "--webhook", "https://h.example/", "--state", state)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: the state file {state} is not valid JSON")
    assert len(result.stderr.splitlines()) == 1
    state.unlink()
    held = NotifyState.open(state)
    try:
        result = cli("notify", "--webhook", "https://h.example/", "--state", state)
    finally:
        held.close()
    assert result.exit_code == 2 and "another notifier is already running" in result.stderr


def test_notify_refuses_metrics_it_cannot_serve_or_write(cli, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("notify", "--metrics-port", port, "--state", tmp_path / "state.json")
    assert result.exit_code == 2
    assert f"Error: cannot serve metrics on port {port} (Address already in use)" in result.stderr
    missing = tmp_path / "missing" / "notify.prom"
    result = cli("notify", "--metrics-file", missing, "--state", tmp_path / "state.json")
    assert result.exit_code == 2
    assert f"Error: cannot write the metrics file {missing} (No such file" in result.stderr


def test_notify_on_a_missing_database_exits_5(cli, tmp_path):
    missing = tmp_path / "missing.db"
    result = cli("--db", missing, "notify", "--webhook", "https://h.example/")
    assert result.exit_code == 5
    assert result.stderr.splitlines()[-1] == f"Error: database not found: {missing}"


def test_notify_help_has_an_example(cli):
    result = cli("notify", "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "pipeline-manager --db " in result.stdout


class InProcess:
    """The notifier in this process (the watch loop on a thread), for rules that need no exec."""

    def __init__(self, db_path, urls, state_path, **options):
        from webapp.notify.notifier import Notifier
        from webapp.notify.state import NotifyState
        from webapp.notify.webhooks import parse_webhooks

        self.state = NotifyState.open(state_path)
        self.notifier = Notifier(
            lambda: PipelineStore(db_path),
            parse_webhooks(urls),
            self.state,
            interval=0.05,
            max_backoff=0.2,
            **options,
        )

    def __enter__(self):
        import threading

        self.notifier.start()
        self.thread = threading.Thread(target=self.notifier.run, daemon=True)
        self.thread.start()
        return self.notifier

    def __exit__(self, *exc_info):
        self.notifier.stop()
        self.thread.join(WAIT)
        self.notifier.close(grace=WAIT)
        self.state.close()


def test_webhooks_removed_from_the_configuration_keep_their_state(db_path, tmp_path):
    state = tmp_path / "state.json"
    removed = {"webhook": "https://old.example#0badf00d", "acknowledged_id": 1}
    state.write_text(json.dumps({"format": 1, "webhooks": {"0badf00d" * 8: removed}}))
    with Receiver() as receiver, InProcess(db_path, [receiver.url], state):
        change = set_in_process(db_path, "filtered")
        receiver.acknowledged_until(change)
        until(lambda: sorted(acknowledged_in(state)) == [1, change], what="state saved")
    assert state_of(state)["webhooks"]["0badf00d" * 8] == removed


def set_in_process(db_path, pipeline_type):
    with PipelineStore(db_path) as store:
        return store.set(pipeline_type, updated_by="ops", reason="test").change.id


def test_state_ahead_of_a_restored_database_rewinds_to_its_newest_change(db_path, tmp_path, caplog):
    from webapp.notify.webhooks import parse_webhook

    state = tmp_path / "state.json"
    with Receiver() as receiver:
        key = parse_webhook(receiver.url).key
        state.write_text(
            json.dumps({"format": 1, "webhooks": {key: {"webhook": "w", "acknowledged_id": 50}}})
        )
        newest = set_in_process(db_path, "filtered")
        with caplog.at_level("INFO", "pipeline.notify"), InProcess(db_path, [receiver.url], state):
            until(lambda: acknowledged_in(state) == [newest], what="rewound")
            change = set_in_process(db_path, "aggregated")
            receiver.acknowledged_until(change)
    assert receiver.ids() == [change]  # #1 was older than the start: not posted
    assert f"newest change is #{newest}, older than #50 already handled" in caplog.text


def test_previous_is_the_metadata_record_else_the_type_of_the_row_before(db_path, tmp_path):
    """One rule on every path (issue 16.4): what metadata records, else the row before's type."""
    set_in_process(db_path, "filtered")
    with Receiver() as receiver, InProcess(db_path, [receiver.url], tmp_path / "s.json"):
        first = insert_row(db_path, "aggregated", "tool", None)
        second = insert_row(db_path, "raw", "tool", '{"previous": "recorded by the tool"}')
        posts = receiver.acknowledged_until(second)
    assert [(p.change_id, p.record["previous"]) for p in posts] == [
        (first, "filtered"),
        (second, "recorded by the tool"),
    ]
    assert "was filtered:" in posts[0].record["text"]


def test_a_delivery_thread_that_breaks_ends_the_watch_loop_with_an_error(
    db_path, tmp_path, monkeypatch, caplog
):
    from webapp.core.errors import PipelineError
    from webapp.notify import notifier as notify
    from webapp.notify import webhooks
    from webapp.notify.state import NotifyState

    def broken(change, previous):
        raise RuntimeError("a bug")

    monkeypatch.setattr(webhooks, "payload", broken)
    state = NotifyState.open(tmp_path / "state.json")
    notifier = notify.Notifier(
        lambda: PipelineStore(db_path),
        webhooks.parse_webhooks(["http://127.0.0.1:9/x"]),
        state,
        interval=0.05,
    )
    try:
        notifier.start()
        set_in_process(db_path, "filtered")
        with pytest.raises(PipelineError, match=r"delivery to http://127\.0\.0\.1:9#\w+ stopped"):
            notifier.run()  # the loop notices at its next check: a supervisor restarts us
        assert not notifier.alive()
    finally:
        notifier.stop()
        notifier.close(grace=WAIT)
        state.close()
    assert "RuntimeError: a bug" in caplog.text  # the traceback is in the log
    assert acknowledged_in(tmp_path / "state.json") == [0]  # nothing acknowledged
