"""How a webhook's posts are signed: our ``X-Pipeline-Signature`` (the default) or Standard
Webhooks (https://www.standardwebhooks.com: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with a ``whsec_``
key), chosen per webhook by writing ``standard+`` before its URL. No Flask, no SQL.
"""

import base64
import binascii
from datetime import UTC, datetime

from webapp.core.errors import InvalidInput

PIPELINE = "pipeline"
STANDARD = "standard"
STANDARD_PREFIX = "standard+"
KEY_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # the specification's bounds for a symmetric key
MAKE_KEY = (
    "python3 -c 'import base64, secrets; "
    'print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())\''
)


def split_choice(url: str) -> tuple[str, str]:
    """Return ``(signing, url)`` for a configured webhook: ``standard+URL`` or a plain URL."""
    if url[: len(STANDARD_PREFIX)].lower() == STANDARD_PREFIX:
        return STANDARD, url[len(STANDARD_PREFIX) :]
    return PIPELINE, url


def check_key(webhooks, secret: str | None) -> None:
    """Refuse to start when a webhook asks for Standard Webhooks signing without a usable
    ``whsec_`` key: posts would go out unsigned or signed with a key no receiver can load."""
    standard = [position for position, hook in enumerate(webhooks, 1) if hook.signing == STANDARD]
    if not standard:
        return
    where = f"webhook {standard[0]} asks for Standard Webhooks signing (standard+)"
    if not secret:
        raise InvalidInput(
            f"{where} but no key is set: set PIPELINE_WEBHOOK_SECRET or "
            f"PIPELINE_WEBHOOK_SECRET_FILE to a whsec_ key (make one: {MAKE_KEY})"
        )
    key_bytes(secret, where)


def key_bytes(secret: str, where: str = "the webhook key") -> bytes:
    """Return the bytes of a ``whsec_`` key (strict base64, 24 to 64 bytes), or refuse it."""
    if not secret.startswith(KEY_PREFIX):
        raise InvalidInput(f"{where}: the key must start with {KEY_PREFIX} (make one: {MAKE_KEY})")
    try:
        # validate=True: a stray character is an error, not silently dropped as b64decode would.
        raw = base64.b64decode(secret[len(KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: the key after {KEY_PREFIX} is not base64") from None
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise InvalidInput(
            f"{where}: the key holds {len(raw)} bytes; Standard Webhooks keys hold "
            f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} (make one: {MAKE_KEY})"
        )
    return raw


def message_id(change_id: int) -> str:
    """``webhook-id``: the same for every attempt at one change (the receiver's dedupe key)."""
    return f"pipeline-change-{change_id}"


def standard_headers(secret: str, change_id: int, body: bytes, now=None) -> dict:
    """Return ``webhook-id``, ``webhook-timestamp`` (now: receivers refuse old ones, so each
    attempt is signed anew) and ``webhook-signature``, signed by the standardwebhooks package."""
    from standardwebhooks import Webhook  # only a standard+ webhook needs it

    when = now or datetime.now(UTC)
    msg_id = message_id(change_id)
    # The body is ASCII JSON (webhooks.payload), so str and bytes sign the same.
    signed = Webhook(key_bytes(secret)).sign(msg_id, when, body.decode("ascii"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signed,
    }
