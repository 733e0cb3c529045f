"""Signed messages between a node and the fleet centre, the Standard Webhooks way.

Keys are ``whsec_`` + base64. A node's key is derived from the fleet secret and the node's name,
so the centre keeps no key table and a leaked node key says nothing about any other node's.
The signature covers ``f"{id}.{timestamp}.".encode() + body``: the body's bytes as sent, never a
decoded string (a body that is not UTF-8 is refused by its signature or its JSON, not by a
decoding error here). ``verify`` reads hostile headers without raising anything but
``SignatureError``: ASCII-digit timestamps only, bounded sizes, every part checked before use.
"""

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping

KEY_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
NODE_KEY_CONTEXT = b"pipeline-manager fleet node key v1\x00"
TOLERANCE_S = 300
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # [0-9], not \d: no Arabic-Indic or full-width digits
MAX_TIMESTAMP = 10**12 - 1  # year 33658: what twelve digits hold
MAX_SIGNATURE_HEADER = 4096  # room for several keys during a rotation, not for a flood
MAX_SIGNATURES = 16
SIGNATURE_BYTES = hashlib.sha256().digest_size
REASONS = ("bad_signature", "timestamp_skew", "malformed_headers")


class SignatureError(Exception):
    """A message refused: ``reason`` is one of REASONS; ``skew_s`` is set for timestamp_skew."""

    def __init__(self, reason: str, message: str, skew_s: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.skew_s = skew_s


def key_problem(key: str) -> str | None:
    """Return what is wrong with ``key`` as a signing key, or None when it is usable."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        return f"does not start with {KEY_PREFIX}"
    try:
        raw = base64.b64decode(key[len(KEY_PREFIX) :].encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return f"is not {KEY_PREFIX} followed by standard base64"
    if len(raw) < MIN_KEY_BYTES:
        return f"holds {len(raw)} bytes (at least {MIN_KEY_BYTES})"
    return None


def key_bytes(key: str) -> bytes:
    """Return the raw bytes of a ``whsec_`` key; ValueError names what is wrong with it."""
    problem = key_problem(key)
    if problem:
        raise ValueError(f"the key {problem}")
    return base64.b64decode(key[len(KEY_PREFIX) :], validate=True)


def derive_node_key(secret: str | bytes, node: str) -> str:
    """Return node ``node``'s key: HMAC-SHA256 of the fleet secret over a context and the name."""
    secret_bytes = secret.encode("utf-8") if isinstance(secret, str) else secret
    raw = hmac.new(secret_bytes, NODE_KEY_CONTEXT + node.encode("utf-8"), hashlib.sha256).digest()
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def new_message_id() -> str:
    """Return a fresh webhook-id (``msg_`` and 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def signature(raw_key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """Return the HMAC-SHA256 of ``{id}.{timestamp}.`` followed by the body's bytes."""
    return hmac.new(
        raw_key, f"{msg_id}.{timestamp}.".encode("ascii") + body, hashlib.sha256
    ).digest()


def sign(key: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the three webhook headers that sign ``body`` with ``key``."""
    if not MESSAGE_ID.fullmatch(msg_id):
        raise ValueError(f"a webhook-id is 1-64 characters of [A-Za-z0-9_.:-], not {msg_id!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError(f"a webhook-timestamp is whole seconds, not {timestamp!r}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a webhook-timestamp is 0..{MAX_TIMESTAMP}, not {timestamp}")
    mac = signature(key_bytes(key), msg_id, timestamp, body)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: "v1," + base64.b64encode(mac).decode("ascii"),
    }


def verify(
    key: str, headers: Mapping, body: bytes, now: float, tolerance: int = TOLERANCE_S
) -> tuple[str, int]:
    """Check ``body`` was signed with ``key`` within ``tolerance`` of ``now``: (id, timestamp).

    Raises SignatureError and nothing else for anything the sender controls. A genuine signature
    is checked before the clock, so "timestamp_skew" means the right key on a wrong clock.
    """
    msg_id, stamp, signatures = signed_headers(headers)
    expected = signature(key_bytes(key), msg_id, int(stamp), bytes(body))
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise SignatureError("bad_signature", "no webhook-signature matches this node's key")
    skew = int(stamp) - int(now)
    if abs(skew) > tolerance:
        raise SignatureError(
            "timestamp_skew",
            f"webhook-timestamp is {skew:+d} s from the receiver's clock (tolerance {tolerance} s)",
            skew_s=skew,
        )
    return msg_id, int(stamp)


def signed_headers(headers: Mapping) -> tuple[str, str, list[bytes]]:
    """Return (id, timestamp text, v1 signatures) from hostile headers, or SignatureError."""
    found = header_values(headers)
    msg_id, stamp, text = (
        found.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    )
    if msg_id is None or stamp is None or text is None:
        raise malformed("webhook-id, webhook-timestamp and webhook-signature are all required")
    if not MESSAGE_ID.fullmatch(msg_id):
        raise malformed("webhook-id must be 1-64 characters of [A-Za-z0-9_.:-]")
    if not TIMESTAMP.fullmatch(stamp):
        raise malformed("webhook-timestamp must be Unix seconds in ASCII digits")
    if len(text) > MAX_SIGNATURE_HEADER or not text.isascii():
        raise malformed(
            f"webhook-signature must be ASCII, at most {MAX_SIGNATURE_HEADER} characters"
        )
    entries = text.split()
    if len(entries) > MAX_SIGNATURES:
        raise malformed(f"webhook-signature holds more than {MAX_SIGNATURES} signatures")
    signatures = [mac for mac in map(v1_signature, entries) if mac is not None]
    if not signatures:
        raise malformed("webhook-signature holds no v1,<base64 HMAC-SHA256> entry")
    return msg_id, stamp, signatures


def header_values(headers: Mapping) -> dict[str, str]:
    """Return the webhook headers by lower-case name; one given twice, differently, is refused."""
    wanted = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    found: dict[str, str] = {}
    try:
        items = list(headers.items())
    except Exception as error:  # a Mapping of our caller's; anything odd in it is malformed
        raise malformed("headers could not be read") from error
    for name, value in items:
        lowered = name.lower() if isinstance(name, str) else None
        if lowered not in wanted:
            continue
        if not isinstance(value, str):
            raise malformed(f"{lowered} is not text")
        if found.setdefault(lowered, value) != value:
            raise malformed(f"{lowered} is given twice with different values")
    return found


def v1_signature(entry: str) -> bytes | None:
    """Return the HMAC bytes of a ``v1,<base64>`` entry; None for other versions or bad base64."""
    version, comma, encoded = entry.partition(",")
    if version != "v1" or not comma:
        return None
    try:
        mac = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None
    return mac if len(mac) == SIGNATURE_BYTES else None


def malformed(message: str) -> SignatureError:
    """Return the error for headers that cannot be read as a signed message."""
    return SignatureError("malformed_headers", message)
