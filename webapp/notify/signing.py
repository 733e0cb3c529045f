"""How a webhook's posts are signed: our ``X-Pipeline-Signature`` (the default) or Standard
Webhooks (https://www.standardwebhooks.com: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with a ``whsec_``
key), chosen per webhook by writing ``standard+`` before its URL. No Flask, no SQL.
"""

from datetime import UTC, datetime

from webapp.accounts import signatures
from webapp.core.errors import InvalidInput

PIPELINE = "pipeline"
STANDARD = "standard"
STANDARD_PREFIX = "standard+"
KEY_PREFIX = signatures.KEY_PREFIX
MIN_KEY_BYTES, MAX_KEY_BYTES = signatures.MIN_KEY_BYTES, 64  # the specification's bounds
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
    try:  # the one reading of a whsec_ key (the fleet's too)
        raw = signatures.key_bytes(secret)
    except ValueError as problem:
        raise InvalidInput(f"{where}: {problem} (make one: {MAKE_KEY})") from None
    if len(raw) > MAX_KEY_BYTES:
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
    attempt is signed anew) and ``webhook-signature``: the fleet protocol's signing, over bytes."""
    key_bytes(secret)  # refused with the webhook's own words before signing
    when = now or datetime.now(UTC)
    return signatures.sign(secret, message_id(change_id), int(when.timestamp()), body)
