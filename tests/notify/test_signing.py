"""webapp/notify/signing.py: Standard Webhooks signing, chosen per webhook with ``standard+``.

Receivers here verify with the standardwebhooks package itself (``Webhook.verify``), as a
receiver following https://www.standardwebhooks.com would.
"""

import base64
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hooklib import TOKEN, Notifier, Receiver, signed
from standardwebhooks import Webhook, WebhookVerificationError
from test_notify import FAST, set_pipeline

from webapp.core.errors import InvalidInput
from webapp.notify import signing, webhooks

KEY = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()


def test_a_standard_post_verifies_with_the_standardwebhooks_package():
    hook = webhooks.parse_webhook(f"standard+https://hooks.example.org/{TOKEN}")
    assert hook.signing == signing.STANDARD and hook.target.startswith("https://hooks.")
    body = b'{"id":7,"pipeline_type":"filtered"}'
    headers = webhooks.headers(7, body, KEY, hook)
    assert headers["webhook-id"] == "pipeline-change-7"
    assert headers["webhook-signature"].startswith("v1,")
    assert "X-Pipeline-Signature" not in headers
    assert Webhook(KEY).verify(body, headers) == {"id": 7, "pipeline_type": "filtered"}
    for wrong_key, wrong_body in ((OTHER_KEY, body), (KEY, body + b" ")):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong_key).verify(wrong_body, headers)


def test_the_default_scheme_is_unchanged_and_the_choice_keeps_label_and_state_key():
    plain = webhooks.parse_webhook(f"https://hooks.example.org/{TOKEN}")
    standard = webhooks.parse_webhook(f"STANDARD+https://hooks.example.org/{TOKEN}")
    assert plain.signing == signing.PIPELINE
    assert (standard.label, standard.key, standard.target) == (plain.label, plain.key, plain.target)
    headers = webhooks.headers(3, b"{}", "key", plain)
    assert headers["X-Pipeline-Signature"] == signed("key", b"{}")
    assert not any(name.startswith("webhook-") for name in headers)


def test_each_attempt_is_signed_at_its_own_time():
    """Receivers refuse a timestamp older than a few minutes: a retry an hour later must carry
    a fresh one, under the same webhook-id."""
    now = datetime.now(UTC)
    first = signing.standard_headers(KEY, 9, b"{}", now - timedelta(hours=1))
    again = signing.standard_headers(KEY, 9, b"{}", now)
    assert first["webhook-id"] == again["webhook-id"]
    assert int(again["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 3600
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(KEY).verify(b"{}", first)
    assert Webhook(KEY).verify(b"{}", again) == {}


def test_the_same_url_with_two_signings_is_refused():
    with pytest.raises(InvalidInput, match="webhook 2: the same URL is listed with another"):
        webhooks.parse_webhooks(["https://a.example/x", "standard+https://a.example/x"])


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "no key is set"),
        ("plain-hex-key-0123456789abcdef0123456789", "does not start with whsec_"),
        ("whsec_not base64!", "followed by standard base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "holds 65 bytes"),
        ("whsec_\u00e9\u202e" + "A" * 40, "followed by standard base64"),
        ("whsec_" + base64.b64encode(bytes(32)).decode() + "\n", "followed by standard base64"),
    ],
)
def test_a_standard_webhook_without_a_usable_whsec_key_is_refused(secret, message):
    hooks = webhooks.parse_webhooks(["https://a.example/1", "standard+https://b.example/2"])
    with pytest.raises(InvalidInput) as refused:
        signing.check_key(hooks, secret)
    assert str(refused.value).startswith("webhook 2 asks for Standard Webhooks signing")
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_key_for_pipeline_signing_only_may_be_anything():
    signing.check_key(webhooks.parse_webhooks(["https://a.example/1"]), "any key at all")
    signing.check_key(webhooks.parse_webhooks(["https://a.example/1"]), None)


def test_notify_refuses_to_start_a_standard_webhook_without_a_whsec_key(cli, tmp_path, monkeypatch):
    from clilib import with_settings

    run = with_settings(
        cli,
        tmp_path,
        monkeypatch,
        PIPELINE_WEBHOOKS="standard+https://ok.example/a",
        PIPELINE_WEBHOOK_SECRET="0123456789abcdef0123456789abcdef",
    )
    result = run("notify", "--state", tmp_path / "state.json")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: webhook 1 asks for Standard Webhooks signing")
    assert not (tmp_path / "state.json").exists()


@pytest.mark.slow
def test_the_notifier_signs_each_webhook_its_own_way(db_path, tmp_path):
    """One change, two receivers: the standard+ one verifies with Webhook.verify, the other
    with X-Pipeline-Signature; the key file's trailing newline is not part of the key."""
    key_file = tmp_path / "webhook_secret"
    key_file.write_text(KEY + "\n")
    with Receiver() as standard, Receiver() as plain:
        notifier = Notifier(
            db_path,
            *("--webhook", f"standard+{standard.url}", "--webhook", plain.url),
            *("--state", tmp_path / "state.json", *FAST),
            env={"PIPELINE_WEBHOOK_SECRET_FILE": key_file},
        )
        try:
            notifier.wait_started()
            change_id = set_pipeline(db_path, "filtered", "two receivers")
            (standard_post,) = standard.acknowledged_until(change_id)
            (plain_post,) = plain.acknowledged_until(change_id)
            assert notifier.stop() == 0, notifier.log()
        finally:
            notifier.kill()
    assert standard_post.path == f"/hooks/{TOKEN}"  # the prefix is not part of the URL posted
    record = Webhook(KEY).verify(standard_post.body, standard_post.headers)
    assert record["id"] == change_id and record == json.loads(plain_post.body)
    received = {name.lower(): value for name, value in standard_post.headers.items()}
    assert received["webhook-id"] == f"pipeline-change-{change_id}"
    assert "x-pipeline-signature" not in received
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_KEY).verify(standard_post.body, standard_post.headers)
    assert hmac.compare_digest(
        plain_post.headers["X-Pipeline-Signature"], signed(KEY, plain_post.body)
    )
    assert "webhook-signature" not in {name.lower() for name in plain_post.headers}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("standard+", "not an http:// or https:// URL (got no scheme)"),
        ("standard+standard+https://h.example/x", "(got standard+https:)"),
        ("standard+ftp://h.example/x", "(got ftp:)"),
        (f"standard+https://h.example/{TOKEN} x", "holds U+0020"),
        ("standard+\u202ehttps://h.example/", "holds U+202E"),
    ],
)
def test_a_standard_url_is_checked_as_any_other(url, message):
    with pytest.raises(InvalidInput) as refused:
        webhooks.parse_webhook(url, 3)
    assert str(refused.value).startswith("webhook 3: ") and message in str(refused.value)
    assert TOKEN not in str(refused.value)
