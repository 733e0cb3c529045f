"""Signed node reports and centre answers: Standard Webhooks signatures, safe on hostile headers."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from webapp.accounts.signatures import (
    MAX_SIGNATURES,
    REASONS,
    SignatureError,
    derive_node_key,
    key_problem,
    new_message_id,
    sign,
    verify,
)

SECRET = "9f2c6a1e7b3d48f0a5c2e9d17b64f3a8c0e5d2b9a7f1c34e6d8b0a2f5c7e9d13"
KEY = derive_node_key(SECRET, "edge-001")
NOW = 1_796_000_000
BODY = b'{"node": "edge-001", "changes": []}'


def refusal(headers, body=BODY, key=KEY, now=NOW) -> SignatureError:
    """Return the error verify raises for this message (the test fails if it accepts it)."""
    with pytest.raises(SignatureError) as caught:
        verify(key, headers, body, now)
    assert caught.value.reason in REASONS
    return caught.value


def test_a_signed_message_verifies_and_names_its_id_and_time():
    msg_id = new_message_id()
    headers = sign(KEY, msg_id, NOW, BODY)
    assert verify(KEY, headers, BODY, NOW) == (msg_id, NOW)
    assert verify(KEY, {k.title(): v for k, v in headers.items()}, BODY, NOW + 299) == (msg_id, NOW)


@given(body=st.text(max_size=200), msg_id=st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"))
def test_signatures_match_the_standardwebhooks_package(body, msg_id):
    """Known answer: our bytes-level HMAC equals the reference implementation's for UTF-8 text."""
    stamp = datetime.fromtimestamp(NOW, tz=UTC)
    reference = Webhook(KEY).sign(msg_id, stamp, body)
    ours = sign(KEY, msg_id, NOW, body.encode("utf-8"))
    assert ours["webhook-signature"] == reference
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(NOW), "webhook-signature": reference}
    assert verify(KEY, headers, body.encode("utf-8"), NOW) == (msg_id, NOW)


def test_the_node_key_is_the_documented_derivation():
    raw = hmac.new(
        SECRET.encode(), b"pipeline-manager fleet node key v1\x00edge-001", hashlib.sha256
    ).digest()
    assert derive_node_key(SECRET, "edge-001") == "whsec_" + base64.b64encode(raw).decode()
    assert key_problem(KEY) is None
    assert derive_node_key(SECRET, "edge-002") != KEY
    assert derive_node_key(SECRET + "x", "edge-001") != KEY


def test_a_body_that_is_not_utf8_is_signed_and_checked_as_bytes():
    body = b'{"node": "\xff\xfe\xc3"}'
    headers = sign(KEY, "msg_1", NOW, body)
    assert verify(KEY, headers, body, NOW) == ("msg_1", NOW)
    assert refusal(headers, body=body + b" ").reason == "bad_signature"


def test_a_forged_or_altered_or_foreign_message_is_a_bad_signature():
    headers = sign(KEY, "msg_1", NOW, BODY)
    assert refusal(headers, body=BODY.replace(b"001", b"002")).reason == "bad_signature"
    assert refusal({**headers, "webhook-id": "msg_2"}).reason == "bad_signature"
    assert refusal({**headers, "webhook-timestamp": str(NOW + 1)}).reason == "bad_signature"
    other_node = sign(derive_node_key(SECRET, "edge-002"), "msg_1", NOW, BODY)
    assert refusal(other_node).reason == "bad_signature"
    zeros = "v1," + base64.b64encode(bytes(32)).decode()
    assert refusal({**headers, "webhook-signature": zeros}).reason == "bad_signature"


def test_a_replayed_message_outside_the_tolerance_is_a_skew_naming_it():
    headers = sign(KEY, "msg_1", NOW, BODY)
    late = refusal(headers, now=NOW + 301)
    assert (late.reason, late.skew_s) == ("timestamp_skew", -301)
    assert "-301 s" in str(late)
    early = refusal(sign(KEY, "msg_2", NOW + 3600, BODY))
    assert (early.reason, early.skew_s) == ("timestamp_skew", 3600)


def test_any_v1_signature_among_several_passes():
    good = sign(KEY, "msg_1", NOW, BODY)["webhook-signature"]
    other = sign(derive_node_key(SECRET, "x"), "msg_1", NOW, BODY)["webhook-signature"]
    header = f"v1a,AAAA {other} v2,{good[3:]} {good}"
    assert verify(KEY, {**sign(KEY, "msg_1", NOW, BODY), "webhook-signature": header}, BODY, NOW)


MALFORMED = {
    "missing id": {"webhook-id": None},
    "missing timestamp": {"webhook-timestamp": None},
    "missing signature": {"webhook-signature": None},
    "empty id": {"webhook-id": ""},
    "long id": {"webhook-id": "m" * 65},
    "id with a newline": {"webhook-id": "msg_1\n"},
    "empty timestamp": {"webhook-timestamp": ""},
    "float timestamp": {"webhook-timestamp": f"{NOW}.0"},
    "negative timestamp": {"webhook-timestamp": f"-{NOW}"},
    "arabic-indic digits": {"webhook-timestamp": "١٧٩٦٠٠٠٠٠٠"},
    "full-width digits": {"webhook-timestamp": "１７９６０００００００"},
    "huge timestamp": {"webhook-timestamp": "9" * 400},
    "exponent": {"webhook-timestamp": "1e9"},
    "nan": {"webhook-timestamp": "nan"},
    "trailing newline": {"webhook-timestamp": f"{NOW}\n"},
    "bad base64": {"webhook-signature": "v1,!!!not base64!!!"},
    "short mac": {"webhook-signature": "v1," + base64.b64encode(b"x" * 8).decode()},
    "no comma": {"webhook-signature": "v1"},
    "empty signature": {"webhook-signature": ""},
    "non-ascii signature": {"webhook-signature": "v1,ÄÖÜ"},
    "too many signatures": {"webhook-signature": " ".join(["v1,AAAA"] * (MAX_SIGNATURES + 1))},
    "huge signature": {"webhook-signature": "v1," + "A" * 10_000},
    "bytes value": {"webhook-id": b"msg_1"},
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_headers_are_refused_as_such(change):
    headers = {**sign(KEY, "msg_1", NOW, BODY), **change}
    headers = {name: value for name, value in headers.items() if value is not None}
    assert refusal(headers).reason == "malformed_headers"


def test_a_header_given_twice_with_different_values_is_malformed():
    headers = sign(KEY, "msg_1", NOW, BODY)
    twice = list(headers.items()) + [("Webhook-Timestamp", str(NOW + 1))]

    class Pairs(dict):
        def items(self):
            return twice

    assert refusal(Pairs()).reason == "malformed_headers"


header_text = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"\A[0-9\u0660-\u0669\uff10-\uff19 .eE+-]{0,30}\Z"),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.lists(
        st.binary(max_size=40).map(lambda b: "v1," + base64.b64encode(b).decode()), max_size=40
    ).map(" ".join),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg_id=header_text,
    stamp=header_text,
    sig=header_text,
    body=st.binary(max_size=300),
    drop=st.sets(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"])),
)
def test_hostile_headers_raise_only_our_error(msg_id, stamp, sig, body, drop):
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": sig}
    for name in drop:
        headers.pop(name)
    error = refusal(headers, body=body)
    assert str(error) and "\n" not in str(error)


@given(body=st.binary(max_size=2000), now=st.integers(min_value=0, max_value=10**12 - 1))
def test_every_signed_body_verifies_and_no_single_bit_flip_does(body, now):
    headers = sign(KEY, "msg_x", now, body)
    assert verify(KEY, headers, body, now) == ("msg_x", now)
    if body:
        flipped = bytes([body[0] ^ 1]) + body[1:]
        assert refusal(headers, body=flipped, now=now).reason == "bad_signature"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "whsec_",
        "sk_" + KEY[6:],
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_ÄÖ==",
        KEY + "\n",
        "whsec_not base64",
    ],
)
def test_bad_keys_are_named(key):
    assert key_problem(key)
    with pytest.raises(ValueError):
        sign(key, "msg_1", NOW, BODY)


def test_sign_refuses_ids_and_times_it_could_not_send():
    for msg_id, stamp in [
        ("", NOW),
        ("a b", NOW),
        ("m" * 65, NOW),
        ("ok", -1),
        ("ok", 1.5),
        ("ok", True),
        ("ok", 10**12),
    ]:
        with pytest.raises(ValueError):
            sign(KEY, msg_id, stamp, BODY)
