"""webapp/webhooks.py: URL checks, labels without tokens, payload, signature, one POST."""

import json
import sqlite3
import threading
import time

import pytest
from hooklib import TOKEN, Receiver, serve_once

from webapp.core.errors import InvalidInput
from webapp.core.store import PipelineStore
from webapp.notify import webhooks
from webapp.notify.webhooks import DeliveryFailed, parse_webhook, parse_webhooks


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example.org/TOKEN", "not an http:// or https:// URL (got ftp:)"),
        ("hooks.example.org/x", "not an http:// or https:// URL (got no scheme)"),
        ("file:///etc/passwd", "(got file:)"),
        ("javascript:alert(1)", "(got javascript:)"),
        ("http://", "the URL names no host"),
        ("https:///path", "the URL names no host"),
        ("https://hooks.example.org:99999/TOKEN", "port is not a number"),
        ("https://hooks.example.org/TOKEN b", "holds U+0020 (space)"),
        ("https://hooks.example.org/a\tb", "holds U+0009"),
        ("https://hooks.example.org/\x1b[2J", "holds U+001B"),
        ("https://hooks.example.org/\u202etxt", "holds U+202E"),
        ("https://hooks.example.org/x\n", "holds U+000A"),
    ],
)
def test_a_url_that_cannot_be_a_webhook_is_refused_without_being_echoed(url, message):
    with pytest.raises(InvalidInput) as refused:
        parse_webhook(url.replace("TOKEN", TOKEN), 2)
    assert str(refused.value).startswith("webhook 2: ")
    assert message in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_label_and_key_name_the_host_never_the_path_or_credentials():
    webhook = parse_webhook(f"https://bot:pa55@Hooks.Example.org:8443/services/{TOKEN}?x=1")
    assert webhook.label.startswith("https://hooks.example.org:8443#")
    assert len(webhook.label.split("#")[1]) == 8
    assert webhook.key.startswith(webhook.label.split("#")[1]) and len(webhook.key) == 64
    assert TOKEN not in webhook.label + webhook.key and "pa55" not in webhook.label
    assert webhook.target == f"https://hooks.example.org:8443/services/{TOKEN}?x=1"
    assert webhook.authorization == "Basic Ym90OnBhNTU="  # bot:pa55


def test_non_ascii_hosts_and_paths_are_encoded_as_http_needs():
    webhook = parse_webhook("https://bücher.example/kanal/ä?q=ü")
    assert webhook.target == "https://xn--bcher-kva.example/kanal/%C3%A4?q=%C3%BC"


def test_webhooks_from_a_setting_skip_empty_entries_and_repeats():
    urls = webhooks.split_setting(
        " https://a.example/1 ,, https://b.example/2,https://a.example/1,"
    )
    assert [hook.label.split("#")[0] for hook in parse_webhooks(urls)] == [
        "https://a.example",
        "https://b.example",
    ]
    with pytest.raises(InvalidInput, match="^webhook 2: "):
        parse_webhooks(["https://a.example/1", "gopher://b.example/"])


# -- payload -------------------------------------------------------------------------------------


def odd_rows(tmp_path):
    """Rows another tool wrote into a table without our CHECK: bytes, odd text, bad JSON."""
    path = tmp_path / "other-tool.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE pipeline_config (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline_type TEXT, "
        "updated_at TIMESTAMP, updated_by TEXT, metadata TEXT)"
    )
    rows = [
        (b"\xff\x00blob", 1.5e300, b"\x01", '{"reason": "\\ud800 lone", "n": 1e999}'),
        ("turbo", "yesterday", "<!channel> & co", '{"reason": "\\ud800 lone surrogate"}'),
        ("filtered", None, None, "NaN"),
    ]
    conn.executemany(
        "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()
    with PipelineStore(path) as store:
        return store.changes_after(0)


def not_json(name):
    raise AssertionError(f"{name} is not strict JSON")


def test_payload_is_strict_ascii_json_even_for_rows_other_tools_wrote(tmp_path):
    changes = odd_rows(tmp_path)
    previous = None
    for change in changes:
        body = webhooks.payload(change, previous)
        body.decode("ascii")
        record = json.loads(body, parse_constant=not_json)
        assert record["id"] == change.id and record["previous"] == (
            previous.decode("utf-8", "replace") if isinstance(previous, bytes) else previous
        )
        assert "\n" not in record["text"]
        previous = change.pipeline_type
    blob, turbo, filtered = (json.loads(webhooks.payload(c, None)) for c in changes)
    assert blob["pipeline_type"] == "\ufffd\x00blob"
    assert "'turbo' (not a type this tool manages)" in turbo["text"]
    assert "&lt;!channel&gt; &amp; co" in turbo["text"]  # Slack would ping the channel
    # A lone surrogate is not Unicode: the metadata is carried as the text it was stored as.
    assert turbo["metadata"] == {"unparsed": '{"reason": "\\ud800 lone surrogate"}'}
    assert "Reason:" not in turbo["text"]
    assert filtered["text"] == (
        "Pipeline changed to filtered (bucket enriched), was raw (the default): change #3 by an "
        "unknown writer at an unknown time."
    )


def test_payload_is_the_get_json_record_plus_previous_and_text(store):
    change = store.set("filtered", updated_by="alice", reason="Enable filtering", source="web")
    record = json.loads(webhooks.payload(change.change, "raw"))
    assert record == {**change.change.to_dict(), "previous": "raw", "text": record["text"]}
    when = record["updated_at"]
    assert record["text"] == (
        f"Pipeline changed to filtered (bucket enriched), was raw: change #1 by alice via web at "
        f"{when}. Reason: Enable filtering"
    )


def test_a_long_reason_is_cut_in_the_text_but_whole_in_the_record(store):
    change = store.set("filtered", updated_by="a", reason="x" * 2000).change
    record = json.loads(webhooks.payload(change, None))
    assert record["metadata"]["reason"] == "x" * 2000
    assert record["text"].endswith("x" * (webhooks.MAX_FIELD - 1) + "…")


def test_headers_carry_the_change_id_and_a_github_style_signature():
    body = b'{"id":7}'
    headers = webhooks.headers(7, body, "s3cret")
    assert headers["X-Pipeline-Change-Id"] == "7"
    assert headers["Content-Type"] == "application/json"
    # printf '{"id":7}' | openssl dgst -sha256 -hmac s3cret
    assert headers["X-Pipeline-Signature"] == (
        "sha256=c48dcba22b49a9371cdf607a41016238221e38c78d72e9eccb55c75bdc0f3ebc"
    )
    assert "X-Pipeline-Signature" not in webhooks.headers(7, body, None)


# -- posting -------------------------------------------------------------------------------------


def test_a_2xx_is_acknowledged_and_anything_else_is_a_failure():
    with Receiver(answers=[204, 500, 404]) as receiver:
        webhook = parse_webhook(receiver.url)
        assert webhooks.post(webhook, b"{}", {}) == 204
        with pytest.raises(DeliveryFailed, match="^HTTP 500$"):
            webhooks.post(webhook, b"{}", {})
        with pytest.raises(DeliveryFailed, match="^HTTP 404$"):
            webhooks.post(webhook, b"{}", {})
    with pytest.raises(DeliveryFailed, match="refused"):
        webhooks.post(webhook, b"{}", {})


def test_a_redirect_is_not_followed():
    followed = []

    def answer(handler):
        if handler.path == "/elsewhere":
            followed.append(handler.command)
        handler.send_response(307 if handler.path != "/elsewhere" else 200)
        handler.send_header("Location", f"http://127.0.0.1:{handler.server.server_port}/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = serve_once(answer)
    try:
        webhook = parse_webhook(f"http://127.0.0.1:{server.server_port}/hook")
        with pytest.raises(DeliveryFailed, match=r"HTTP 307, a redirect to 127\.0\.0\.1:\d+"):
            webhooks.post(webhook, b"{}", {})
    finally:
        server.shutdown()
        server.server_close()
    assert followed == []


def test_a_receiver_that_never_answers_times_out():
    gate = threading.Event()

    def hang(handler):
        gate.wait(10)

    server = serve_once(hang)
    try:
        webhook = parse_webhook(f"http://127.0.0.1:{server.server_port}/slow")
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"no answer within 0\.3 s"):
            webhooks.post(webhook, b"{}", {}, timeout=0.3)
        assert time.monotonic() - started < 3
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


def test_basic_credentials_in_the_url_are_sent_as_a_header():
    with Receiver() as receiver:
        url = receiver.url.replace("http://", "http://bot:pa55@")
        webhooks.post(parse_webhook(url), b"{}", {"X-Pipeline-Change-Id": "1"})
        post = receiver.next_post()
    assert post.headers["Authorization"] == "Basic Ym90OnBhNTU="
    assert post.path == f"/hooks/{TOKEN}"
